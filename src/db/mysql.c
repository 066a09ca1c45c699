/*
 * db/mysql.c - the MariaDB / MySQL driver, on libmariadb's non-blocking API.
 *
 * Every libmariadb call that may touch the network is made through its _start/_cont pair:
 * _start runs the call on a small stack of the library's own until the socket would block,
 * then returns what it waits for (MYSQL_WAIT_READ, _WRITE, _TIMEOUT); the coroutine parks
 * in nx_db_wait and resumes the call with _cont when the socket is ready. The worker thread
 * never blocks, and a statement whose deadline passes is abandoned mid-protocol: its
 * connection is marked broken (the pool closes it) and the server is asked, from a second
 * short-lived connection, to stop the query (KILL QUERY).
 *
 * Statements are prepared once per connection (the binary protocol: values never mix with
 * the SQL text) after $N is rewritten to ?, with the parameter each ? takes recorded, since
 * $1 may appear twice or after $2. Results are stored client-side in one read, then copied
 * into the call's arena, so the connection is idle again when a statement returns.
 *
 * Error numbers are translated to the SQLSTATEs <nexus/db.h> promises (23505 unique...),
 * since MySQL's own SQLSTATEs are coarse (23000 for every integrity error, HY000 for many).
 */
#include "db/db_impl.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <mysql.h>

#include <nexus/arena.h>

#include "core/util.h"

/* The time a KILL QUERY gets (connect and query) after a statement was abandoned. */
#define KILL_MS 1000
/* MYSQL_OPT_CONNECT_TIMEOUT when the call has no deadline, in seconds. */
#define CONNECT_TIMEOUT_S 10
/* Error numbers the driver acts on (mysqld_error.h / errmsg.h). */
#define ER_NEED_REPREPARE 1615
#define ER_MAX_PREPARED_STMT_COUNT_REACHED 1461
#define CR_NEW_STMT_METADATA 2057

typedef struct mstmt mstmt;

typedef struct mconn {
    nx_db_conn base;
    MYSQL *m;
    const nx_db_settings *s; /* borrowed: lives as long as the process */
    bool ready;              /* connected and set up: worth a KILL QUERY when abandoned */
    /* Statements to close on the server at the next chance: uncache cannot wait. */
    mstmt *doomed;
} mconn;

/* A prepared statement: e->handle of its cache entry. */
struct mstmt {
    MYSQL_STMT *st;
    mstmt *next;  /* in mconn.doomed */
    int nparams;  /* the highest $N of the text */
    bool changes; /* INSERT, REPLACE, UPDATE or DELETE: its rows (RETURNING) are changes */
    size_t norder;
    int order[]; /* the parameter (0-based) each ? takes */
};

/* ---- errors ---------------------------------------------------------------------- */

/*
 * MySQL error numbers with a meaning the API promises. broken: the connection cannot be
 * used after it (lost, or the server is going away).
 */
static const struct {
    unsigned code;
    nx_db_error_kind kind;
    const char *sqlstate;
    bool broken;
} known[] = {
    {1062, NX_DB_CONSTRAINT, "23505", false}, /* duplicate entry */
    {1586, NX_DB_CONSTRAINT, "23505", false}, /* duplicate entry, with key name */
    {1048, NX_DB_CONSTRAINT, "23502", false}, /* column cannot be null */
    {1364, NX_DB_CONSTRAINT, "23502", false}, /* field has no default value */
    {1451, NX_DB_CONSTRAINT, "23503", false}, /* row still referenced */
    {1452, NX_DB_CONSTRAINT, "23503", false}, /* referenced row missing */
    {1216, NX_DB_CONSTRAINT, "23503", false}, /* the same, older servers */
    {1217, NX_DB_CONSTRAINT, "23503", false}, /* the same, older servers */
    {3819, NX_DB_CONSTRAINT, "23514", false}, /* check constraint (MySQL) */
    {4025, NX_DB_CONSTRAINT, "23514", false}, /* check constraint (MariaDB) */
    {1213, NX_DB_CONFLICT, "40001", false},   /* deadlock */
    {1205, NX_DB_CONFLICT, "40001", false},   /* lock wait timeout */
    {1969, NX_DB_TIMEOUT, "57014", false},    /* max_statement_time (MariaDB) */
    {3024, NX_DB_TIMEOUT, "57014", false},    /* max_execution_time (MySQL) */
    {1317, NX_DB_TIMEOUT, "57014", false},    /* query interrupted (KILL QUERY) */
    {1040, NX_DB_UNAVAILABLE, "53300", true}, /* too many connections */
    {1203, NX_DB_UNAVAILABLE, "53300", true}, /* max_user_connections */
    {1053, NX_DB_UNAVAILABLE, "57P01", true}, /* server shutdown in progress */
    {1927, NX_DB_UNAVAILABLE, "57P01", true}, /* connection killed */
    {4031, NX_DB_UNAVAILABLE, "08006", true}, /* disconnected for inactivity (MySQL) */
    {2002, NX_DB_UNAVAILABLE, "08001", true}, /* cannot connect (socket) */
    {2003, NX_DB_UNAVAILABLE, "08001", true}, /* cannot connect (TCP) */
    {2006, NX_DB_UNAVAILABLE, "08006", true}, /* server has gone away */
    {2013, NX_DB_UNAVAILABLE, "08006", true}, /* lost connection during query */
    {2055, NX_DB_UNAVAILABLE, "08006", true}, /* lost connection, system error */
    {2026, NX_DB_UNAVAILABLE, "08006", true}, /* TLS error */
    {2014, NX_DB_QUERY, "08006", true},       /* commands out of sync: a driver bug */
    {2027, NX_DB_UNAVAILABLE, "08006", true}, /* malformed packet */
};

/*
 * The constraint named by an integrity error's message, copied into the arena, or NULL.
 * The formats: "... for key 'name'" (MySQL 8: 'table.name'), "... CONSTRAINT `name` ...",
 * "Check constraint 'name' is violated".
 */
static const char *constraint_of(nx_arena *a, unsigned code, const char *msg)
{
    const char *p = NULL, *end = NULL;
    if (code == 1062 || code == 1586) {
        for (const char *q = msg; (q = strstr(q, "for key '")); q++)
            p = q + strlen("for key '");
        end = p ? strrchr(p, '\'') : NULL;
        const char *dot = end ? memrchr(p, '.', (size_t)(end - p)) : NULL;
        if (dot)
            p = dot + 1;
    } else if ((p = strstr(msg, "CONSTRAINT `"))) {
        p += strlen("CONSTRAINT `");
        end = strchr(p, '`');
    } else if ((p = strstr(msg, "onstraint '"))) {
        p += strlen("onstraint '");
        end = strchr(p, '\'');
    }
    return p && end && end > p ? nx_arena_strndup(a, p, (size_t)(end - p)) : NULL;
}

/* Fills call->err from a MySQL error; sets c->base.broken when the connection is lost. */
static int fail_with(mconn *c, nx_db_call *call, unsigned code, const char *sqlstate,
                     const char *msg)
{
    for (size_t i = 0; i < NX_ARRAY_LEN(known); i++) {
        if (known[i].code != code)
            continue;
        if (known[i].broken)
            c->base.broken = true;
        nx_db_fail(call, known[i].kind, known[i].sqlstate, (int)code, "%s", msg);
        if (known[i].kind == NX_DB_CONSTRAINT)
            call->err->constraint = constraint_of(call->arena, code, msg);
        return NX_ERR;
    }
    /* HY000 is MySQL's "general error", not a connection failure as it would be read. */
    nx_db_error_kind kind = NX_DB_QUERY;
    if (sqlstate && strcmp(sqlstate, "HY000") != 0)
        kind = nx_db_kind_of_sqlstate(sqlstate);
    if (kind == NX_DB_UNAVAILABLE)
        c->base.broken = true;
    return nx_db_fail(call, kind, sqlstate, (int)code, "%s", msg);
}

static int fail_conn(mconn *c, nx_db_call *call)
{
    return fail_with(c, call, mysql_errno(c->m), mysql_sqlstate(c->m), mysql_error(c->m));
}

static int fail_stmt(mconn *c, nx_db_call *call, MYSQL_STMT *st)
{
    return fail_with(c, call, mysql_stmt_errno(st), mysql_stmt_sqlstate(st), mysql_stmt_error(st));
}

/* ---- waiting --------------------------------------------------------------------- */

static void kill_query(mconn *c, nx_db_call *call);

/*
 * Parks until the socket is ready for what status (a MYSQL_WAIT_* mask from a _start or
 * _cont) asks, and returns the mask to resume with. Returns 0 when the call must stop:
 * its deadline passed or its client went away (the statement is then abandoned: the
 * connection is broken, the server asked to kill the query) or the loop refused the
 * socket; call->err is filled.
 */
static int await(mconn *c, nx_db_call *call, int status, const char *what)
{
    uint32_t events = 0;
    if (status & MYSQL_WAIT_READ)
        events |= EPOLLIN;
    if (status & MYSQL_WAIT_WRITE)
        events |= EPOLLOUT;
    if (status & MYSQL_WAIT_EXCEPT)
        events |= EPOLLPRI;
    /* The library's own timer (connect_timeout) runs inside the call's deadline. */
    nx_db_call w = *call;
    bool lib_timer = false;
    if (status & MYSQL_WAIT_TIMEOUT) {
        uint64_t at = nx_loop_now(call->loop) + mysql_get_timeout_value_ms(c->m);
        if (!w.deadline || at < w.deadline) {
            w.deadline = at;
            lib_timer = true;
        }
    }
    int rc;
    if (events) {
        rc = nx_db_wait(&w, mysql_get_socket(c->m), events);
    } else if (lib_timer) {
        rc = nx_db_sleep_until(&w, w.deadline);
        if (rc == NX_OK)
            rc = NX_DB_WAIT_TIMEOUT;
    } else {
        return MYSQL_WAIT_TIMEOUT; /* nothing to wait for: let the library decide */
    }
    if (rc > 0) {
        int ready = 0;
        if (rc & EPOLLIN)
            ready |= MYSQL_WAIT_READ;
        if (rc & EPOLLOUT)
            ready |= MYSQL_WAIT_WRITE;
        /* An error or hangup: the library finds out by trying what it wanted. */
        if (!ready || (rc & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)))
            ready |= status & (MYSQL_WAIT_READ | MYSQL_WAIT_WRITE | MYSQL_WAIT_EXCEPT);
        return ready;
    }
    if (rc == NX_DB_WAIT_TIMEOUT && lib_timer)
        return MYSQL_WAIT_TIMEOUT;
    c->base.broken = true;
    if (rc == NX_ERR) {
        nx_db_fail(call, NX_DB_UNAVAILABLE, "08006", 0,
                   "%s: the event loop refused the connection's socket", what);
        return 0;
    }
    if (!c->ready && !(call->gone && *call->gone)) {
        /* Still connecting: the server, or the network, does not answer. */
        nx_db_fail(call, NX_DB_UNAVAILABLE, "08001", 0, "no answer in time (%s)", what);
        return 0;
    }
    if (c->ready)
        kill_query(c, call);
    nx_db_fail_deadline(call, what);
    return 0;
}

/* ---- connections ----------------------------------------------------------------- */

/* The server's name for messages: host:port, or the socket path. */
static const char *where(const nx_db_settings *s, char *buf, size_t len)
{
    if (s->host && s->host[0] == '/')
        snprintf(buf, len, "%s", s->host);
    else
        snprintf(buf, len, "%s:%d", s->host && s->host[0] ? s->host : "localhost",
                 s->port ? s->port : 3306);
    return buf;
}

/*
 * Applies the URL's query options ("ssl-mode=REQUIRED&ssl-ca=/etc/ca.pem"); *tls says
 * whether TLS is required. NX_OK, or NX_ERR with call->err naming what is wrong.
 */
static int apply_options(MYSQL *m, const nx_db_settings *s, nx_db_call *call, bool *tls)
{
    *tls = false;
    if (!s->options || !s->options[0])
        return NX_OK;
    char *opts = nx_xstrdup(s->options), *save = NULL;
    int rc = NX_OK;
    for (char *kv = strtok_r(opts, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
        char *val = strchr(kv, '=');
        if (val)
            *val++ = '\0';
        else
            val = "";
        my_bool yes = 1, no = 0;
        if (strcmp(kv, "ssl-mode") == 0 || strcmp(kv, "sslmode") == 0) {
            if (strcasecmp(val, "disabled") == 0 || strcasecmp(val, "disable") == 0 ||
                strcasecmp(val, "preferred") == 0 || strcasecmp(val, "prefer") == 0) {
                continue;
            } else if (strcasecmp(val, "required") == 0 || strcasecmp(val, "require") == 0) {
                mysql_optionsv(m, MYSQL_OPT_SSL_ENFORCE, &yes);
                mysql_optionsv(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &no);
                *tls = true;
            } else if (strncasecmp(val, "verify", 6) == 0) {
                mysql_optionsv(m, MYSQL_OPT_SSL_ENFORCE, &yes);
                mysql_optionsv(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &yes);
                *tls = true;
            } else {
                rc = nx_db_fail(call, NX_DB_UNAVAILABLE, NULL, 0,
                                "database.url: ssl-mode=%s: expected disabled, preferred, "
                                "required, verify_ca or verify_identity",
                                val);
                break;
            }
        } else if (strcmp(kv, "ssl-ca") == 0 || strcmp(kv, "sslrootcert") == 0) {
            mysql_optionsv(m, MYSQL_OPT_SSL_CA, val);
        } else if (strcmp(kv, "charset") == 0 || strcmp(kv, "host") == 0) {
            continue; /* utf8mb4 always (the API's text is UTF-8); host: read by settings.c */
        } else {
            rc = nx_db_fail(call, NX_DB_UNAVAILABLE, NULL, 0,
                            "database.url: option '%s' is not one the MySQL driver knows "
                            "(ssl-mode, ssl-ca, charset)",
                            kv);
            break;
        }
    }
    free(opts);
    return rc;
}

/*
 * Connects c->m to the server. NX_OK, or NX_ERR with call->err filled (c->m then still
 * needs closing).
 */
static int open_conn(mconn *c, const nx_db_settings *s, nx_db_call *call)
{
    c->m = mysql_init(NULL);
    if (!c->m)
        nx_oom();
    MYSQL *m = c->m;
    if (mysql_options(m, MYSQL_OPT_NONBLOCK, 0) != 0)
        return nx_db_fail(call, NX_DB_UNAVAILABLE, NULL, 0,
                          "libmariadb refused its non-blocking mode");
    unsigned timeout = CONNECT_TIMEOUT_S;
    if (call->deadline) {
        uint64_t now = nx_loop_now(call->loop);
        uint64_t left = call->deadline > now ? call->deadline - now : 0;
        timeout = (unsigned)((left + 999) / 1000);
        if (timeout == 0)
            timeout = 1;
    }
    my_bool off = 0;
    unsigned no_infile = 0;
    mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
    mysql_options(m, MYSQL_OPT_RECONNECT, &off); /* a new session would lose its state */
    /* LOAD DATA LOCAL would let a hostile server read the worker's files. */
    mysql_options(m, MYSQL_OPT_LOCAL_INFILE, &no_infile);
    mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    if (s->application_name && s->application_name[0])
        mysql_optionsv(m, MYSQL_OPT_CONNECT_ATTR_ADD, "program_name", s->application_name);
    bool tls;
    if (apply_options(m, s, call, &tls) != NX_OK)
        return NX_ERR;

    const char *host = s->host && s->host[0] ? s->host : "localhost";
    const char *sock = NULL;
    if (host[0] == '/') {
        sock = host;
        host = "localhost";
    }
    /*
     * libmariadb resolves a host name itself, blocking the worker: it is resolved here
     * (core/resolve.h) and the first address connected to. Not when the server's
     * certificate is checked (ssl-mode=verify_ca or verify_identity: libmariadb compares
     * it with the name in both), which needs the name: that resolution stays libmariadb's.
     * "localhost" is libmariadb's name for the server's Unix socket, not one to look up.
     */
    my_bool verify = 0;
    mysql_get_optionv(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &verify);
    nx_addrs addrs;
    if (!sock && !verify && strcmp(host, "localhost") != 0 && !nx_host_is_numeric(host)) {
        if (nx_db_resolve(call, host, &addrs) != NX_OK)
            return NX_ERR;
        host = addrs.addr[0];
    }
    /*
     * CLIENT_FOUND_ROWS: an UPDATE counts the rows it matched, as PostgreSQL and SQLite
     * do, not only those whose values changed. CLIENT_MULTI_STATEMENTS: for scripts.
     */
    MYSQL *ret = NULL;
    int st =
        mysql_real_connect_start(&ret, m, host, s->user, s->password, s->name, (unsigned)s->port,
                                 sock, CLIENT_MULTI_STATEMENTS | CLIENT_FOUND_ROWS);
    while (st) {
        if (!(st = await(c, call, st, "connect")))
            return NX_ERR;
        st = mysql_real_connect_cont(&ret, m, st);
    }
    if (!ret)
        return nx_db_fail(call, NX_DB_UNAVAILABLE, "08001", (int)mysql_errno(m), "%s",
                          mysql_error(m));
    /* Without certificate checks, libmariadb falls back to plain text when the server
     * offers no TLS: "required" must not mean "if available". */
    if (tls && !mysql_get_ssl_cipher(m))
        return nx_db_fail(call, NX_DB_UNAVAILABLE, "08001", 0,
                          "ssl-mode requires TLS but the server does not offer it");
    return NX_OK;
}

/*
 * Closes m without waiting: a connection left mid-protocol gets its socket shut down
 * first, so that the COM_QUIT mysql_close writes fails at once instead of blocking.
 * On a healthy idle connection that write is a few bytes into an empty socket buffer.
 */
static void discard(MYSQL *m, bool broken)
{
    if (!m)
        return;
    int fd = mysql_get_socket(m);
    if (broken && fd >= 0)
        shutdown(fd, SHUT_RDWR);
    mysql_close(m);
}

static int text_query(mconn *c, nx_db_call *call, const char *sql, const char *what);

static nx_db_conn *drv_connect(const nx_db_settings *s, nx_db_call *call)
{
    mconn *c = nx_xcalloc(1, sizeof(*c));
    c->s = s;
    if (open_conn(c, s, call) != NX_OK)
        goto fail;
    /*
     * The session: UTF-8 throughout, and the statement timeout enforced by the server
     * itself, so a slow statement ends with an error and the connection stays usable.
     * MariaDB counts seconds (max_statement_time), MySQL 8 milliseconds (SELECTs only).
     */
    char setup[160];
    uint64_t ms = s->statement_timeout_ms;
    if (!ms)
        snprintf(setup, sizeof(setup), "SET NAMES utf8mb4");
    else if (strstr(mysql_get_server_info(c->m), "MariaDB"))
        snprintf(setup, sizeof(setup),
                 "SET NAMES utf8mb4; SET SESSION max_statement_time = %llu.%03llu",
                 (unsigned long long)(ms / 1000), (unsigned long long)(ms % 1000));
    else
        snprintf(setup, sizeof(setup), "SET NAMES utf8mb4; SET SESSION max_execution_time = %llu",
                 (unsigned long long)ms);
    if (text_query(c, call, setup, "connect") != NX_OK)
        goto fail;
    c->ready = true;
    return &c->base;

fail:;
    /* Whatever went wrong, the pool reports the server unavailable, naming it. */
    nx_db_error e = *call->err;
    char name[300];
    nx_db_fail(call, e.kind == NX_DB_CANCELED ? e.kind : NX_DB_UNAVAILABLE, e.sqlstate, e.code,
               "cannot connect to MySQL at %s: %s", where(s, name, sizeof(name)), e.message);
    discard(c->m, true);
    free(c);
    return NULL;
}

static void drv_close(nx_db_conn *base)
{
    mconn *c = (mconn *)base;
    /* mysql_close detaches every statement from the connection first, so closing the
     * statements after it frees memory and sends nothing. */
    discard(c->m, base->broken);
    c->m = NULL;
    nx_db_cache_clear(base);
    while (c->doomed) {
        mstmt *ps = c->doomed;
        c->doomed = ps->next;
        mysql_stmt_close(ps->st);
        free(ps);
    }
    free(c);
}

/*
 * Idle connections say nothing: readable means the server closed it (EOF), or sent an
 * error before closing (wait_timeout) - dead either way. Costs no round trip.
 */
static bool drv_alive(nx_db_conn *base)
{
    mconn *c = (mconn *)base;
    if (base->broken || !c->m)
        return false;
    int fd = mysql_get_socket(c->m);
    if (fd < 0)
        return false;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    return false;
}

static int drv_ping(nx_db_conn *base, nx_db_call *call)
{
    mconn *c = (mconn *)base;
    if (base->broken)
        return nx_db_fail(call, NX_DB_UNAVAILABLE, "08006", 0, "the connection is broken");
    int ret = 0;
    int st = mysql_ping_start(&ret, c->m);
    while (st) {
        if (!(st = await(c, call, st, "ping")))
            return NX_ERR;
        st = mysql_ping_cont(&ret, c->m, st);
    }
    if (ret == 0)
        return NX_OK;
    fail_conn(c, call);
    c->base.broken = true; /* whatever the reason, a connection that fails a ping is done */
    return NX_ERR;
}

/*
 * KILL QUERY for the statement c was running, sent from a new connection (c is
 * mid-protocol and cannot say more), bounded by KILL_MS and not by the call's deadline,
 * which is over. Without it the statement would run on in the server after c is closed.
 * Best effort: a failure is only logged.
 */
static void kill_query(mconn *c, nx_db_call *call)
{
    nx_db_error err = {0};
    nx_db_call kc = {.loop = call->loop,
                     .arena = call->arena,
                     .deadline = nx_loop_now(call->loop) + KILL_MS,
                     .err = &err};
    mconn k = {.s = c->s};
    char sql[64];
    snprintf(sql, sizeof(sql), "KILL QUERY %lu", mysql_thread_id(c->m));
    if (open_conn(&k, c->s, &kc) != NX_OK || text_query(&k, &kc, sql, "KILL QUERY") != NX_OK)
        nx_log_warn("database: could not stop an abandoned statement (%s): %s", sql, err.message);
    discard(k.m, k.base.broken || err.kind != NX_DB_OK);
}

/* ---- statements ------------------------------------------------------------------ */

/*
 * Closes a statement on the server (COM_STMT_CLOSE, no reply awaited) and frees it.
 * NX_OK, or NX_ERR with the connection broken.
 */
static int close_stmt(mconn *c, nx_db_call *call, MYSQL_STMT *st)
{
    my_bool ret = 0;
    int status = mysql_stmt_close_start(&ret, st);
    while (status) {
        if (!(status = await(c, call, status, "statement close")))
            return NX_ERR;
        status = mysql_stmt_close_cont(&ret, st, status);
    }
    return NX_OK;
}

static int flush_doomed(mconn *c, nx_db_call *call)
{
    while (c->doomed) {
        mstmt *ps = c->doomed;
        c->doomed = ps->next;
        int rc = close_stmt(c, call, ps->st);
        free(ps);
        if (rc != NX_OK)
            return NX_ERR;
    }
    return NX_OK;
}

/* Cache eviction: closing needs the network, which may mean waiting; run does it later. */
static void drv_uncache(nx_db_conn *base, nx_db_cached *e)
{
    mconn *c = (mconn *)base;
    mstmt *ps = e->handle;
    e->handle = NULL;
    if (c->m) {
        ps->next = c->doomed;
        c->doomed = ps;
    } else {
        mysql_stmt_close(ps->st); /* detached by mysql_close: memory only */
        free(ps);
    }
}

/*
 * Whether sql changes rows: the count of rows a statement with a result set reports is
 * then the rows it changed (INSERT ... RETURNING), and otherwise 0, as <nexus/db.h> says.
 */
static bool changes_rows(const char *sql)
{
    static const char *const verbs[] = {"INSERT", "REPLACE", "UPDATE", "DELETE"};
    for (;;) {
        while (*sql == ' ' || *sql == '\t' || *sql == '\n' || *sql == '\r' || *sql == '(')
            sql++;
        if (sql[0] == '/' && sql[1] == '*') {
            const char *end = strstr(sql + 2, "*/");
            sql = end ? end + 2 : sql + strlen(sql);
        } else if ((sql[0] == '-' && sql[1] == '-') || sql[0] == '#') {
            sql += strcspn(sql, "\n");
        } else {
            break;
        }
    }
    for (size_t i = 0; i < NX_ARRAY_LEN(verbs); i++) {
        size_t n = strlen(verbs[i]);
        if (strncasecmp(sql, verbs[i], n) == 0 && !isalnum((unsigned char)sql[n]))
            return true;
    }
    return false;
}

/*
 * The prepared statement for sql on c: from the cache, or translated, prepared and
 * cached. NULL with call->err filled on failure.
 */
static mstmt *prepare(mconn *c, nx_db_call *call, const char *sql)
{
    nx_db_cached *e = nx_db_cache_find(&c->base, sql);
    if (e)
        return e->handle;

    size_t max = 1;
    for (const char *p = sql; *p; p++)
        max += *p == '$';
    mstmt *ps = nx_xcalloc(1, sizeof(*ps) + max * sizeof(int));
    char why[200];
    char *text = nx_db_translate(sql, NX_DB_PH_QMARK, ps->order, max, &ps->norder, &ps->nparams,
                                 why, sizeof(why));
    if (!text) {
        free(ps);
        nx_db_fail(call, NX_DB_MISUSE, NULL, 0, "%s", why);
        return NULL;
    }
    ps->st = mysql_stmt_init(c->m);
    if (!ps->st)
        nx_oom();
    my_bool yes = 1;
    mysql_stmt_attr_set(ps->st, STMT_ATTR_UPDATE_MAX_LENGTH, &yes);
    int ret = 0;
    int st = mysql_stmt_prepare_start(&ret, ps->st, text, (unsigned long)strlen(text));
    while (st) {
        int ready = await(c, call, st, "statement");
        if (!ready)
            break; /* st stays non-zero: abandoned */
        st = mysql_stmt_prepare_cont(&ret, ps->st, ready);
    }
    free(text);
    bool ok = st == 0 && ret == 0;
    if (st == 0 && ret != 0)
        fail_stmt(c, call, ps->st);
    if (ok && mysql_stmt_param_count(ps->st) != ps->norder) {
        ok = false;
        nx_db_fail(call, NX_DB_MISUSE, NULL, 0,
                   "the statement has %zu placeholders ($N) but the server counts %lu "
                   "(write parameters as $1, $2, ..., never ?)",
                   ps->norder, mysql_stmt_param_count(ps->st));
    }
    if (!ok) {
        /* Closed before the next statement (or with the connection, if it broke). */
        ps->next = c->doomed;
        c->doomed = ps;
        return NULL;
    }
    ps->changes = changes_rows(sql);
    e = nx_db_cache_add(&c->base, sql);
    e->handle = ps;
    return ps;
}

/* Binds params in the order the ?s take them. The arrays are the caller's (n entries). */
static void bind_params(const mstmt *ps, const nx_db_value *params, MYSQL_BIND *b,
                        signed char *tiny)
{
    for (size_t i = 0; i < ps->norder; i++) {
        const nx_db_value *v = &params[ps->order[i]];
        memset(&b[i], 0, sizeof(b[i]));
        switch (v->type) {
        case NX_DB_INT:
            b[i].buffer_type = MYSQL_TYPE_LONGLONG;
            b[i].buffer = (void *)&v->v.i;
            break;
        case NX_DB_FLOAT:
            b[i].buffer_type = MYSQL_TYPE_DOUBLE;
            b[i].buffer = (void *)&v->v.f;
            break;
        case NX_DB_BOOL:
            tiny[i] = v->v.b ? 1 : 0;
            b[i].buffer_type = MYSQL_TYPE_TINY;
            b[i].buffer = &tiny[i];
            break;
        case NX_DB_TEXT:
        case NX_DB_BLOB:
            b[i].buffer_type = v->type == NX_DB_TEXT ? MYSQL_TYPE_STRING : MYSQL_TYPE_BLOB;
            b[i].buffer = (void *)(v->v.s.ptr ? v->v.s.ptr : "");
            b[i].buffer_length = (unsigned long)v->v.s.len;
            b[i].length = &b[i].buffer_length;
            break;
        default: b[i].buffer_type = MYSQL_TYPE_NULL; break;
        }
    }
}

/* How a result column is fetched and what it becomes. */
typedef enum { AS_INT, AS_UINT, AS_DOUBLE, AS_REAL_TEXT, AS_BITS, AS_TEXT, AS_BLOB } col_how;

typedef struct col {
    col_how how;
    int64_t i;
    double f;
    char *buf; /* AS_REAL_TEXT, AS_BITS, AS_TEXT, AS_BLOB */
    unsigned long cap, len;
    my_bool is_null, error;
} col;

static col_how how_of(const MYSQL_FIELD *f)
{
    switch (f->type) {
    case MYSQL_TYPE_TINY:
    case MYSQL_TYPE_SHORT:
    case MYSQL_TYPE_INT24:
    case MYSQL_TYPE_LONG:
    case MYSQL_TYPE_LONGLONG:
    case MYSQL_TYPE_YEAR: return f->flags & UNSIGNED_FLAG ? AS_UINT : AS_INT;
    case MYSQL_TYPE_DOUBLE: return AS_DOUBLE;
    case MYSQL_TYPE_FLOAT: return AS_REAL_TEXT; /* "0.1", not the double nearest the float 0.1 */
    case MYSQL_TYPE_BIT: return AS_BITS;
    case MYSQL_TYPE_STRING:
    case MYSQL_TYPE_VAR_STRING:
    case MYSQL_TYPE_VARCHAR:
    case MYSQL_TYPE_TINY_BLOB:
    case MYSQL_TYPE_MEDIUM_BLOB:
    case MYSQL_TYPE_LONG_BLOB:
    case MYSQL_TYPE_BLOB:
    case MYSQL_TYPE_GEOMETRY:
        return f->charsetnr == 63 ? AS_BLOB : AS_TEXT; /* 63: the binary "charset" */
    default: return AS_TEXT; /* DECIMAL exact, dates and times as ISO text, JSON, ENUM, SET */
    }
}

static void bind_cols(MYSQL_FIELD *fields, col *cols, MYSQL_BIND *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        col *k = &cols[i];
        memset(&b[i], 0, sizeof(b[i]));
        k->how = how_of(&fields[i]);
        b[i].is_null = &k->is_null;
        b[i].error = &k->error;
        b[i].length = &k->len;
        switch (k->how) {
        case AS_INT:
        case AS_UINT:
            b[i].buffer_type = MYSQL_TYPE_LONGLONG;
            b[i].buffer = &k->i;
            b[i].is_unsigned = k->how == AS_UINT;
            break;
        case AS_DOUBLE:
            b[i].buffer_type = MYSQL_TYPE_DOUBLE;
            b[i].buffer = &k->f;
            break;
        default:
            /* max_length is the longest value stored (STMT_ATTR_UPDATE_MAX_LENGTH); a
             * floor covers types it is not computed for, and fetch_column the rest. */
            k->cap = fields[i].max_length < 64 ? 64 : fields[i].max_length + 1;
            k->buf = nx_xmalloc(k->cap);
            b[i].buffer_type = k->how == AS_BLOB ? MYSQL_TYPE_BLOB : MYSQL_TYPE_STRING;
            b[i].buffer = k->buf;
            b[i].buffer_length = k->cap;
            break;
        }
    }
}

/* Copies the fetched row into r. */
static void take_row(MYSQL_STMT *st, nx_db_result *r, col *cols, MYSQL_BIND *binds, size_t n)
{
    nx_db_value *row = nx_db_result_add_row(r);
    for (size_t i = 0; i < n; i++) {
        col *k = &cols[i];
        nx_db_value *v = &row[i];
        if (k->is_null)
            continue;
        if (k->buf && k->len >= k->cap) {
            /* Longer than the buffer: fetch the column again into one that fits. */
            k->cap = k->len + 1;
            free(k->buf);
            k->buf = nx_xmalloc(k->cap);
            binds[i].buffer = k->buf;
            binds[i].buffer_length = k->cap;
            mysql_stmt_fetch_column(st, &binds[i], (unsigned)i, 0);
            mysql_stmt_bind_result(st, binds); /* the next rows go to the new buffer */
        }
        switch (k->how) {
        case AS_INT:
            v->type = NX_DB_INT;
            v->v.i = k->i;
            break;
        case AS_UINT:
            if ((uint64_t)k->i > INT64_MAX) {
                char num[24];
                int len = snprintf(num, sizeof(num), "%llu", (unsigned long long)(uint64_t)k->i);
                nx_db_result_set_bytes(r, v, NX_DB_TEXT, num, (size_t)len);
            } else {
                v->type = NX_DB_INT;
                v->v.i = k->i;
            }
            break;
        case AS_DOUBLE:
            v->type = NX_DB_FLOAT;
            v->v.f = k->f;
            break;
        case AS_REAL_TEXT:
            k->buf[k->len] = '\0';
            v->type = NX_DB_FLOAT;
            v->v.f = strtod(k->buf, NULL);
            break;
        case AS_BITS: {
            uint64_t bits = 0;
            for (unsigned long j = 0; j < k->len && j < 8; j++)
                bits = bits << 8 | (unsigned char)k->buf[j];
            v->type = NX_DB_INT;
            v->v.i = (int64_t)bits;
            break;
        }
        default:
            nx_db_result_set_bytes(r, v, k->how == AS_BLOB ? NX_DB_BLOB : NX_DB_TEXT, k->buf,
                                   k->len);
            break;
        }
    }
}

/*
 * Reads the result set of an executed statement into a new result. NX_OK, or NX_ERR with
 * call->err filled. Frees the statement's result either way, unless the connection broke.
 */
static int read_rows(mconn *c, nx_db_call *call, mstmt *ps, MYSQL_RES *meta, nx_db_result **out)
{
    MYSQL_STMT *st = ps->st;
    int ret = 0;
    int s = mysql_stmt_store_result_start(&ret, st);
    while (s) {
        if (!(s = await(c, call, s, "statement")))
            return NX_ERR;
        s = mysql_stmt_store_result_cont(&ret, st, s);
    }
    if (ret != 0) {
        fail_stmt(c, call, st);
        if (!c->base.broken)
            mysql_stmt_free_result(st);
        return NX_ERR;
    }
    size_t n = mysql_num_fields(meta);
    MYSQL_FIELD *fields = mysql_fetch_fields(meta);
    nx_db_result *r = nx_db_result_new(call->arena, n);
    for (size_t i = 0; i < n; i++)
        nx_db_result_set_col(r, i, fields[i].name, fields[i].name_length);
    col *cols = nx_xcalloc(n, sizeof(*cols));
    MYSQL_BIND *binds = nx_xcalloc(n, sizeof(*binds));
    bind_cols(fields, cols, binds, n);
    int rc = NX_OK;
    if (mysql_stmt_bind_result(st, binds) != 0) {
        rc = fail_stmt(c, call, st);
    } else {
        for (;;) {
            /* Rows are already stored: fetch reads memory, never the socket. */
            s = mysql_stmt_fetch_start(&ret, st);
            while (s) {
                if (!(s = await(c, call, s, "statement")))
                    break;
                s = mysql_stmt_fetch_cont(&ret, st, s);
            }
            if (c->base.broken) {
                rc = NX_ERR;
                break;
            }
            if (ret == MYSQL_NO_DATA)
                break;
            if (ret != 0 && ret != MYSQL_DATA_TRUNCATED) {
                rc = fail_stmt(c, call, st);
                break;
            }
            take_row(st, r, cols, binds, n);
        }
    }
    if (ps->changes)
        nx_db_result_set_affected(r, (int64_t)mysql_stmt_affected_rows(st));
    if (!c->base.broken)
        mysql_stmt_free_result(st);
    for (size_t i = 0; i < n; i++)
        free(cols[i].buf);
    free(cols);
    free(binds);
    if (rc == NX_OK)
        *out = r;
    return rc;
}

/*
 * Skips the result sets after the first (a CALL ends with one more, its status), which
 * must be read before the connection can take another statement.
 */
static int skip_more(mconn *c, nx_db_call *call, MYSQL_STMT *st)
{
    while (mysql_stmt_more_results(st)) {
        int ret = 0;
        int s = mysql_stmt_next_result_start(&ret, st);
        while (s) {
            if (!(s = await(c, call, s, "statement")))
                return NX_ERR;
            s = mysql_stmt_next_result_cont(&ret, st, s);
        }
        if (ret > 0)
            return fail_stmt(c, call, st);
        if (ret < 0)
            break;
        if (mysql_stmt_field_count(st) > 0) {
            s = mysql_stmt_store_result_start(&ret, st);
            while (s) {
                if (!(s = await(c, call, s, "statement")))
                    return NX_ERR;
                s = mysql_stmt_store_result_cont(&ret, st, s);
            }
            if (ret != 0)
                return fail_stmt(c, call, st);
            mysql_stmt_free_result(st);
        }
    }
    return NX_OK;
}

/* Executes ps with params and sets *out. NX_OK, NX_ERR, or NX_AGAIN: prepare it again. */
static int execute(mconn *c, nx_db_call *call, mstmt *ps, const nx_db_value *params,
                   nx_db_result **out)
{
    MYSQL_STMT *st = ps->st;
    MYSQL_BIND *b = NULL;
    signed char *tiny = NULL;
    int ret = 0, s = 0;
    if (ps->norder) {
        b = nx_xcalloc(ps->norder, sizeof(*b));
        tiny = nx_xcalloc(ps->norder, 1);
        bind_params(ps, params, b, tiny);
        /* bind_param copies the binds, not the values: those stay ours until sent. */
        ret = mysql_stmt_bind_param(st, b);
    }
    if (ret == 0)
        s = mysql_stmt_execute_start(&ret, st);
    while (s) {
        int ready = await(c, call, s, "statement");
        if (!ready)
            break;
        s = mysql_stmt_execute_cont(&ret, st, ready);
    }
    free(b);
    free(tiny);
    if (s)
        return NX_ERR; /* abandoned */
    if (ret != 0) {
        /* A table changed under the cached statement: the server wants it prepared again. */
        unsigned code = mysql_stmt_errno(st);
        if (code == ER_NEED_REPREPARE || code == CR_NEW_STMT_METADATA)
            return NX_AGAIN;
        return fail_stmt(c, call, st);
    }

    MYSQL_RES *meta = mysql_stmt_result_metadata(st);
    int rc;
    if (meta) {
        rc = read_rows(c, call, ps, meta, out);
        mysql_free_result(meta);
    } else {
        *out = nx_db_result_new(call->arena, 0);
        nx_db_result_set_affected(*out, (int64_t)mysql_stmt_affected_rows(st));
        rc = NX_OK;
    }
    if (rc == NX_OK)
        rc = skip_more(c, call, st);
    return rc;
}

static int run_one(mconn *c, nx_db_call *call, nx_db_stmt *stmt)
{
    for (int attempt = 0;; attempt++) {
        mstmt *ps = prepare(c, call, stmt->sql);
        if (!ps && call->err->code == ER_MAX_PREPARED_STMT_COUNT_REACHED && attempt == 0 &&
            !c->base.broken) {
            /* The server's limit is for all its clients: give back this connection's. */
            nx_db_cache_clear(&c->base);
            if (flush_doomed(c, call) != NX_OK)
                return NX_ERR;
            continue;
        }
        if (!ps)
            return NX_ERR;
        if ((size_t)ps->nparams != stmt->nparams)
            return nx_db_fail(call, NX_DB_MISUSE, NULL, 0,
                              "the statement uses parameters up to $%d but %zu were passed",
                              ps->nparams, stmt->nparams);
        int rc = execute(c, call, ps, stmt->params, &stmt->result);
        if (rc != NX_AGAIN)
            return rc;
        if (attempt > 0)
            return fail_stmt(c, call, ps->st);
        /* Closing the stale statement also reads what the server still sends for it. */
        nx_db_cache_remove(&c->base, nx_db_cache_find(&c->base, stmt->sql));
        if (flush_doomed(c, call) != NX_OK)
            return NX_ERR;
    }
}

static int drv_run(nx_db_conn *base, nx_db_call *call, nx_db_stmt *stmts, size_t n)
{
    mconn *c = (mconn *)base;
    if (base->broken)
        return nx_db_fail(call, NX_DB_UNAVAILABLE, "08006", 0, "the connection is broken");
    if (flush_doomed(c, call) != NX_OK)
        return NX_ERR;
    for (size_t i = 0; i < n; i++)
        if (run_one(c, call, &stmts[i]) != NX_OK)
            return NX_ERR;
    return NX_OK;
}

/* ---- scripts --------------------------------------------------------------------- */

/*
 * Runs SQL text (possibly several statements) with the text protocol and reads every
 * result it produces. NX_OK, or NX_ERR with call->err filled by the first failure.
 */
static int text_query(mconn *c, nx_db_call *call, const char *sql, const char *what)
{
    int ret = 0;
    int s = mysql_real_query_start(&ret, c->m, sql, (unsigned long)strlen(sql));
    while (s) {
        if (!(s = await(c, call, s, what)))
            return NX_ERR;
        s = mysql_real_query_cont(&ret, c->m, s);
    }
    if (ret != 0)
        return fail_conn(c, call);
    for (;;) {
        if (mysql_field_count(c->m) > 0) {
            MYSQL_RES *res = NULL;
            s = mysql_store_result_start(&res, c->m);
            while (s) {
                if (!(s = await(c, call, s, what)))
                    return NX_ERR;
                s = mysql_store_result_cont(&res, c->m, s);
            }
            if (!res)
                return fail_conn(c, call);
            mysql_free_result(res); /* stored: frees memory only */
        }
        if (!mysql_more_results(c->m))
            return NX_OK;
        s = mysql_next_result_start(&ret, c->m);
        while (s) {
            if (!(s = await(c, call, s, what)))
                return NX_ERR;
            s = mysql_next_result_cont(&ret, c->m, s);
        }
        if (ret > 0)
            return fail_conn(c, call);
        if (ret < 0)
            return NX_OK;
    }
}

static int drv_script(nx_db_conn *base, nx_db_call *call, const char *sql)
{
    mconn *c = (mconn *)base;
    if (base->broken)
        return nx_db_fail(call, NX_DB_UNAVAILABLE, "08006", 0, "the connection is broken");
    if (flush_doomed(c, call) != NX_OK)
        return NX_ERR;
    return text_query(c, call, sql, "statement");
}

const nx_db_driver nx_db_mysql_driver = {
    .name = "mysql",
    .connect = drv_connect,
    .close = drv_close,
    .alive = drv_alive,
    .ping = drv_ping,
    .run = drv_run,
    .script = drv_script,
    .begin_sql = "START TRANSACTION",
    .uncache = drv_uncache,
};
