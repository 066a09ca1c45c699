/*
 * nexus/db.h - the database, one API whatever the backend.
 *
 * The server is configured with one database (database.type: sqlite, postgresql or mysql)
 * and every worker keeps a pool of connections to it. A handler runs statements through
 * its request: the statement borrows a pooled connection for as long as it runs (or for
 * the whole transaction, see nx_db_begin), and the request's coroutine is parked while
 * the database works, so the worker serves other requests meanwhile.
 *
 * Statements are parameterised, always: values travel apart from the SQL text, written
 * as $1, $2, ... in every backend (the SQLite and MySQL drivers translate). Each
 * connection prepares a statement the first time it sees its text and reuses it after,
 * so pass the same string for the same statement (a literal is best).
 *
 *   nx_db_result *r = nx_db_query(req, "SELECT id, title FROM todos WHERE id = $1",
 *                                 NX_DB_ARGS(NX_DB_I64(id)));
 *   if (!r)
 *       nx_db_problem(req, res);               // 503, 504, 409, 422 or 500
 *   else if (nx_db_rows(r) == 0)
 *       nx_problem(res, 404, "no todo %lld", (long long)id);
 *   else
 *       nx_json(res, 200, nx_db_row_json(r, 0));
 *
 * Results are copied into the request's arena: they stay valid until the response has
 * been sent, and need no freeing. Every function here runs in a handler's coroutine.
 */
#ifndef NEXUS_DB_H
#define NEXUS_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nexus/http.h>

/* ---- values ----------------------------------------------------------------------- */

typedef enum nx_db_type {
    NX_DB_NULL,
    NX_DB_INT,   /* int64_t */
    NX_DB_FLOAT, /* double */
    NX_DB_TEXT,  /* UTF-8 text, len bytes (NUL-terminated in results) */
    NX_DB_BLOB,  /* bytes */
    NX_DB_BOOL,
} nx_db_type;

/* A parameter or a column value. */
typedef struct nx_db_value {
    nx_db_type type;
    union {
        int64_t i;
        double f;
        bool b;
        struct {
            const char *ptr;
            size_t len;
        } s;
    } v;
} nx_db_value;

#define NX_DB_NULLV ((nx_db_value){.type = NX_DB_NULL})
#define NX_DB_I64(x) ((nx_db_value){.type = NX_DB_INT, .v.i = (int64_t)(x)})
#define NX_DB_F64(x) ((nx_db_value){.type = NX_DB_FLOAT, .v.f = (double)(x)})
#define NX_DB_BOOLV(x) ((nx_db_value){.type = NX_DB_BOOL, .v.b = (x)})
/* Text from a NUL-terminated string; NULL gives SQL NULL. */
#define NX_DB_STR(x) nx_db_str(x)
#define NX_DB_TEXTN(p, n) ((nx_db_value){.type = NX_DB_TEXT, .v.s = {(p), (n)}})
#define NX_DB_BLOBN(p, n) ((nx_db_value){.type = NX_DB_BLOB, .v.s = {(p), (n)}})

static inline nx_db_value nx_db_str(const char *s)
{
    nx_db_value v = {.type = NX_DB_NULL};
    if (s) {
        size_t n = 0;
        while (s[n])
            n++;
        v.type = NX_DB_TEXT;
        v.v.s.ptr = s;
        v.v.s.len = n;
    }
    return v;
}

/*
 * The parameter list of a statement, as the two arguments (array, count) that the query
 * functions take: NX_DB_ARGS(NX_DB_I64(id), NX_DB_STR(title)). For none, pass NULL, 0.
 */
#define NX_DB_ARGS(...)                                                                            \
    (const nx_db_value[]){__VA_ARGS__},                                                            \
        (sizeof((const nx_db_value[]){__VA_ARGS__}) / sizeof(nx_db_value))

/* ---- errors ----------------------------------------------------------------------- */

typedef enum nx_db_error_kind {
    NX_DB_OK = 0,
    NX_DB_UNAVAILABLE, /* no connection: the server is down, or the pool stayed full */
    NX_DB_TIMEOUT,     /* statement_timeout or the request's deadline ran out */
    NX_DB_CANCELED,    /* the client went away and the statement was cancelled */
    NX_DB_CONSTRAINT,  /* an integrity constraint refused the change (SQLSTATE 23xxx) */
    NX_DB_CONFLICT,    /* serialization failure or deadlock: retrying may succeed */
    NX_DB_QUERY,       /* the statement itself is wrong (syntax, unknown column, type) */
    NX_DB_MISUSE,      /* the API was called wrongly (no transaction to commit...) */
} nx_db_error_kind;

typedef struct nx_db_error {
    nx_db_error_kind kind;
    /*
     * SQLSTATE of the failure, five characters, or "" when there is none. The integrity
     * classes are the same in every backend: 23505 unique, 23502 not null, 23503 foreign
     * key, 23514 check (SQLite and MySQL codes are translated to these).
     */
    char sqlstate[6];
    int code;               /* the backend's own error number, 0 if none */
    char message[256];      /* the backend's message, for logs; never sent to clients */
    const char *constraint; /* the constraint's name when the backend says it, else NULL */
} nx_db_error;

/* The error of the request's last failed database call (kind NX_DB_OK if none failed). */
const nx_db_error *nx_db_error_of(nx_req *req);

/*
 * Answers the request's last database error as problem+json: 503 (with Retry-After) for
 * UNAVAILABLE and CONFLICT, 504 for TIMEOUT, 409 for a unique violation, 422 for other
 * constraints, 499 for CANCELED, 500 otherwise (the detail then says only that the
 * statement failed; the message is logged with the request id).
 */
void nx_db_problem(nx_req *req, nx_res *res);

/* ---- statements ------------------------------------------------------------------- */

typedef struct nx_db_result nx_db_result;

/*
 * Runs one statement. Returns its result (possibly with no rows), or NULL on error: see
 * nx_db_error_of / nx_db_problem.
 */
nx_db_result *nx_db_query(nx_req *req, const char *sql, const nx_db_value *params, size_t nparams);

/* As nx_db_query, for statements whose rows do not matter: NX_OK or NX_ERR. */
int nx_db_exec(nx_req *req, const char *sql, const nx_db_value *params, size_t nparams);

/*
 * Several statements sent together. PostgreSQL pipelines them (one round trip for all,
 * and outside a transaction they commit or fail together); the other backends run them in
 * order. Fills each stmt's result, and returns NX_OK when all succeeded, else NX_ERR with
 * the first error recorded (results of the statements before it are kept).
 */
typedef struct nx_db_stmt {
    const char *sql;
    const nx_db_value *params;
    size_t nparams;
    nx_db_result *result; /* out */
} nx_db_stmt;

int nx_db_batch(nx_req *req, nx_db_stmt *stmts, size_t n);

/* ---- transactions ----------------------------------------------------------------- */

/*
 * Starts a transaction: the request keeps one connection until nx_db_commit or
 * nx_db_rollback, and every statement of the request runs in it. A transaction still
 * open when the handler returns is rolled back. SQLite takes its write lock at once
 * (BEGIN IMMEDIATE). No nesting: a second begin is NX_DB_MISUSE.
 */
int nx_db_begin(nx_req *req);
int nx_db_commit(nx_req *req);
int nx_db_rollback(nx_req *req);

/* ---- results ---------------------------------------------------------------------- */

size_t nx_db_rows(const nx_db_result *r);
size_t nx_db_cols(const nx_db_result *r);
const char *nx_db_col_name(const nx_db_result *r, size_t col);

/* Column index by name, or -1. */
int nx_db_col_index(const nx_db_result *r, const char *name);

/* Rows changed by an INSERT, UPDATE or DELETE. */
int64_t nx_db_affected(const nx_db_result *r);

/* The value at (row, col); out of range gives a NULL value. */
const nx_db_value *nx_db_value_at(const nx_db_result *r, size_t row, size_t col);

/*
 * Typed getters; out of range or NULL gives 0 / NULL / false. Numbers stored as text
 * are converted; nx_db_text returns any non-NULL value as text (in the arena).
 */
bool nx_db_is_null(const nx_db_result *r, size_t row, size_t col);
int64_t nx_db_i64(const nx_db_result *r, size_t row, size_t col);
double nx_db_f64(const nx_db_result *r, size_t row, size_t col);
bool nx_db_bool(const nx_db_result *r, size_t row, size_t col);
const char *nx_db_text(const nx_db_result *r, size_t row, size_t col);
nx_str nx_db_blob(const nx_db_result *r, size_t row, size_t col);

/*
 * Rows as JSON (jansson json_t *, a new reference): one row as an object keyed by
 * column name, or all rows as an array of such objects. Integers, reals, booleans and
 * NULL keep their JSON types; blobs become base64 text.
 */
void *nx_db_row_json(const nx_db_result *r, size_t row);
void *nx_db_rows_json(const nx_db_result *r);

/* ---- about the database ------------------------------------------------------------ */

/* "sqlite", "postgresql" or "mysql": for the rare statement that must differ. */
const char *nx_db_backend(void);

#endif
