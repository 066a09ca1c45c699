/*
 * db/db_impl.h - what the database layer (db.c) and its drivers share.
 *
 * db.c owns the public API of <nexus/db.h>, the per-worker pool, results, errors and the
 * placeholder translation; a driver (sqlite.c, pg.c, mysql.c) only talks to its server.
 * A driver's connection struct starts with an nx_db_conn, which the pool manages.
 *
 * Every driver function runs in a coroutine and may park it (nx_db_wait); none may block
 * the worker on the network. Each gets an nx_db_call: the loop, the arena results go to,
 * the deadline, the client-gone flag, and the error to fill on failure.
 */
#ifndef NX_DB_DB_IMPL_H
#define NX_DB_DB_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nexus/db.h>

#include "core/loop.h"
#include "core/resolve.h"
#include "core/wait.h"

typedef enum nx_db_kind {
    NX_DBK_SQLITE,
    NX_DBK_POSTGRESQL,
    NX_DBK_MYSQL,
} nx_db_kind;

/* The database settings, resolved from database.* and database.url (db/settings.c). */
typedef struct nx_db_settings {
    nx_db_kind kind;
    char *host; /* name, address, or (PostgreSQL) a socket directory; MySQL: a socket path
                 * when it starts with '/' */
    int port;
    char *name;
    char *user;
    char *password;
    char *path;    /* SQLite file (":memory:" allowed for tests) */
    char *options; /* URL query ("sslmode=disable&connect_timeout=5"), "" if none */
    int pool_size;
    int max_overflow;
    uint64_t pool_timeout_ms;
    uint64_t pool_recycle_ms;
    bool pre_ping;
    uint64_t statement_timeout_ms; /* 0 = none */
    char *application_name;
    bool auto_migrate;
} nx_db_settings;

/* One call into a driver. */
typedef struct nx_db_call {
    nx_loop *loop;
    nx_arena *arena;      /* results are copied here */
    uint64_t deadline;    /* absolute monotonic ms; 0 = none */
    bool statement_bound; /* deadline comes from statement_timeout, not the request */
    const bool *gone;     /* set when the client went away; may be NULL */
    nx_db_error *err;     /* filled on failure */
} nx_db_call;

typedef struct nx_db_cached nx_db_cached;
typedef struct nx_db_driver nx_db_driver;

/* The head of every driver's connection. */
typedef struct nx_db_conn {
    const nx_db_driver *drv;
    struct nx_db_conn *next; /* in the pool's idle list */
    uint64_t born_ms;
    uint64_t used_ms;
    bool broken;          /* unusable: closed instead of returned to the pool */
    bool in_tx;           /* a transaction is open */
    bool overflow;        /* opened beyond pool_size */
    nx_db_cached **cache; /* prepared statements by SQL text (db.c) */
    size_t ncached;
} nx_db_conn;

/* A prepared statement kept by a connection, keyed by its SQL text. */
struct nx_db_cached {
    nx_db_cached *next;
    uint64_t hash;
    char *sql;    /* the text as the plugin wrote it */
    void *handle; /* the driver's: sqlite3_stmt *, MYSQL_STMT *, ... */
    unsigned id;  /* a number unique in the connection (PostgreSQL statement names) */
};

struct nx_db_driver {
    const char *name; /* "sqlite", "postgresql", "mysql" */
    /* Opens a connection, or returns NULL with call->err filled (UNAVAILABLE). */
    nx_db_conn *(*connect)(const nx_db_settings *s, nx_db_call *call);
    /* Closes it and frees everything it holds (cached statements: via nx_db_cache_clear). */
    void (*close)(nx_db_conn *c);
    /* A check costing no round trip (the socket has not been closed by the server). */
    bool (*alive)(nx_db_conn *c);
    /* A round trip to the server. NX_OK / NX_ERR (err filled). */
    int (*ping)(nx_db_conn *c, nx_db_call *call);
    /*
     * Runs n statements in order (pipelined where the protocol allows), setting each
     * stmts[i].result. NX_OK, or NX_ERR with err filled for the first failure. A failure
     * that leaves the connection unusable sets c->broken.
     */
    int (*run)(nx_db_conn *c, nx_db_call *call, nx_db_stmt *stmts, size_t n);
    /* Runs SQL text that may hold several statements, no parameters, no results. */
    int (*script)(nx_db_conn *c, nx_db_call *call, const char *sql);
    /* The statement that opens a transaction ("BEGIN", "BEGIN IMMEDIATE", ...). */
    const char *begin_sql;
    /* Frees a cached statement's handle (called by nx_db_cache_clear). */
    void (*uncache)(nx_db_conn *c, nx_db_cached *e);
};

extern const nx_db_driver nx_db_sqlite_driver;
extern const nx_db_driver nx_db_pg_driver;
extern const nx_db_driver nx_db_mysql_driver;

/* ---- for drivers ---- */

/*
 * Parks the call's coroutine until fd has one of events, the deadline passes or the
 * client goes away. Returns the events (> 0), NX_DB_WAIT_TIMEOUT, NX_DB_WAIT_GONE, or
 * NX_ERR (epoll refused the fd). The two codes are negative and differ from NX_OK (0)
 * and NX_ERR, so that functions returning NX_OK/NX_ERR can pass them on.
 */
#define NX_DB_WAIT_GONE (-3)
#define NX_DB_WAIT_TIMEOUT (-4)
int nx_db_wait(nx_db_call *call, int fd, uint32_t events);

/* As nx_db_wait, on a socket kept registered for the connection's life (core/wait.h). */
int nx_db_wait_watch(nx_db_call *call, nx_watch *wt, uint32_t events);

/*
 * Resolves a host name for a new connection without blocking the worker (core/resolve.h),
 * within the call's deadline. NX_OK with out filled (a numeric host is copied), or NX_ERR
 * with call->err: UNAVAILABLE (08001) for a name that does not resolve, TIMEOUT or CANCELED.
 */
int nx_db_resolve(nx_db_call *call, const char *host, nx_addrs *out);

/* Parks until when (ms) or the client goes away (NX_DB_WAIT_GONE); NX_OK otherwise. */
int nx_db_sleep_until(nx_db_call *call, uint64_t when);

/* Fills call->err (kind, SQLSTATE or NULL, backend code, printf message). Returns NX_ERR. */
int nx_db_fail(nx_db_call *call, nx_db_error_kind kind, const char *sqlstate, int code,
               const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* The error kind a SQLSTATE belongs to (08xxx unavailable, 23xxx constraint, ...). */
nx_db_error_kind nx_db_kind_of_sqlstate(const char *sqlstate);

/* The timeout error of a call whose deadline passed: TIMEOUT or CANCELED (client gone). */
int nx_db_fail_deadline(nx_db_call *call, const char *what);

/* Results: a new empty one with ncols columns, in the call's arena. */
nx_db_result *nx_db_result_new(nx_arena *a, size_t ncols);
/* Names column i (the name is copied). */
void nx_db_result_set_col(nx_db_result *r, size_t i, const char *name, size_t len);
/* Appends a row of ncols NULL values and returns them, to fill. */
nx_db_value *nx_db_result_add_row(nx_db_result *r);
/* Sets v to a text (or blob) copy of len bytes at p, NUL-terminated, in r's arena. */
void nx_db_result_set_bytes(nx_db_result *r, nx_db_value *v, nx_db_type type, const char *p,
                            size_t len);
void nx_db_result_set_affected(nx_db_result *r, int64_t n);

/*
 * Prepared statements of a connection, by SQL text. Adding to a cache that holds
 * NX_DB_CACHE_MAX entries empties it first (drivers that refer to entries across a batch
 * make room before the batch).
 */
#define NX_DB_CACHE_MAX 512
nx_db_cached *nx_db_cache_find(nx_db_conn *c, const char *sql);
/* Adds an entry (the SQL is copied) and returns it; the driver sets ->handle. */
nx_db_cached *nx_db_cache_add(nx_db_conn *c, const char *sql);
/* Removes one entry (after a failed prepare), calling drv->uncache when it has a handle. */
void nx_db_cache_remove(nx_db_conn *c, nx_db_cached *e);
/* Frees every entry, calling drv->uncache for each with a handle. */
void nx_db_cache_clear(nx_db_conn *c);

/*
 * Placeholders: the API's $1..$N translated for a driver. Quoted strings, quoted names
 * and comments are copied untouched. NX_DB_PH_QNUM writes ?N (SQLite); NX_DB_PH_QMARK
 * writes ? and records in order[] which parameter (0-based) each ? takes (MySQL), at most
 * max_order of them. Returns a malloc'd string, or NULL with a reason in err (a $0, a
 * number above 65535). *nparams gets the highest N used.
 */
typedef enum { NX_DB_PH_QNUM, NX_DB_PH_QMARK } nx_db_ph_style;
char *nx_db_translate(const char *sql, nx_db_ph_style style, int *order, size_t max_order,
                      size_t *norder, int *nparams, char *err, size_t errlen);

/* ---- for the server, the CLI and the tests (db.c, settings.c) ---- */

/*
 * Resolves the database settings from the configuration (database.url wins over the
 * separate keys). NX_OK, or NX_ERR with a message naming the key and its source.
 */
struct nx_config;
int nx_db_settings_load(nx_db_settings *s, const struct nx_config *cfg, char *err, size_t errlen);
void nx_db_settings_free(nx_db_settings *s);

/* Parses a URL ("postgresql://u:p@h:5432/db?x=y", "mysql://...", "sqlite:///rel.db"). */
int nx_db_parse_url(nx_db_settings *s, const char *url, char *err, size_t errlen);

/*
 * Starts the database layer in this process (a worker after fork, or a CLI command) with
 * settings s (borrowed for the life of the process) on loop. Opens nothing yet: connections
 * are made on first use. nx_db_stop closes every idle connection.
 */
void nx_db_start(const nx_db_settings *s, nx_loop *loop);
void nx_db_stop(void);
bool nx_db_started(void);

/* Ends a request's use of the database: rolls back an open transaction. */
void nx_db_request_end(nx_req *req);

/* Readiness: a pooled connection answers a ping within a second. */
bool nx_db_ready(const char **why);

/*
 * Runs fn(arg) in a coroutine on a private loop until it returns, for code outside a
 * worker (migrations, backup, tests). The database layer must be started on that loop:
 * nx_db_run_sync creates the loop, starts the layer with s, runs fn, stops the layer.
 */
int nx_db_run_sync(const nx_db_settings *s, int (*fn)(void *arg), void *arg);

/*
 * The same API as <nexus/db.h> for code with no request: statements run with deadline
 * (0 = only the statement timeout), their results in arena a, errors in *err.
 */
typedef struct nx_db_session {
    nx_arena *arena;
    uint64_t deadline;
    const bool *gone; /* the request's client-gone flag, or NULL */
    nx_db_error err;
    nx_db_conn *pinned; /* the connection held by a transaction or nx_db_session_hold */
    bool in_tx;
    bool held; /* the connection was held (nx_db_session_hold) before the transaction */
} nx_db_session;

nx_db_result *nx_db_session_query(nx_db_session *s, const char *sql, const nx_db_value *params,
                                  size_t nparams);
int nx_db_session_batch(nx_db_session *s, nx_db_stmt *stmts, size_t n);
int nx_db_session_script(nx_db_session *s, const char *sql);
int nx_db_session_begin(nx_db_session *s);
int nx_db_session_commit(nx_db_session *s);
int nx_db_session_rollback(nx_db_session *s);
/*
 * Keeps one connection for the session's statements until nx_db_session_unhold, for
 * session-scoped state (an advisory lock). NX_OK / NX_ERR.
 */
int nx_db_session_hold(nx_db_session *s);
void nx_db_session_unhold(nx_db_session *s);

/* This process's settings (after nx_db_start), for the CLI commands. */
const nx_db_settings *nx_db_settings_current(void);

#endif
