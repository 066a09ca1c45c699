/*
 * pg.c - the PostgreSQL driver, on libpq's non-blocking API.
 *
 * The socket is non-blocking and every wait parks the request's coroutine on it
 * (nx_db_wait), so a query costs the worker nothing while the server works. Statements
 * go through the extended protocol in pipeline mode: a statement's first use on a
 * connection sends Parse and Execute together, and a batch of n statements is sent at
 * once with one Sync, so it takes one round trip, not n.
 *
 * When a call's deadline passes or its client goes away, the running statement is
 * cancelled: libpq 15's PQcancel blocks, so it runs on a short-lived thread, while the
 * coroutine goes on reading the connection until the server reports the cancellation
 * (57014). The connection is then clean and goes back to the pool; if the server does not
 * answer even that, the connection is closed.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <libpq-fe.h>

#include <nexus/log.h>

#include "core/util.h"
#include "db/db_impl.h"

/* How long a cancelled statement may take to give its connection back. */
#define CANCEL_DRAIN_MS 3000
#define MAX_PARAMS 65535

/* Type OIDs of pg_type.h (stable across versions). */
enum {
    OID_BOOL = 16,
    OID_BYTEA = 17,
    OID_INT8 = 20,
    OID_INT2 = 21,
    OID_INT4 = 23,
    OID_OID = 26,
    OID_FLOAT4 = 700,
    OID_FLOAT8 = 701,
};

typedef struct pg_conn {
    nx_db_conn base;
    PGconn *pg;
    nx_watch watch; /* the socket, registered once connected */
} pg_conn;

/* ---- errors ---- */

static int fail_conn(pg_conn *c, nx_db_call *call, const char *what)
{
    c->base.broken = true;
    return nx_db_fail(call, NX_DB_UNAVAILABLE, "08006", 0, "%s: %s", what, PQerrorMessage(c->pg));
}

static int fail_result(pg_conn *c, nx_db_call *call, const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    if (!msg)
        msg = PQresultErrorMessage(res);
    if (!state) /* no SQLSTATE: libpq's own error, the connection is lost */
        return fail_conn(c, call, "connection lost");
    nx_db_error_kind kind = nx_db_kind_of_sqlstate(state);
    if (kind == NX_DB_UNAVAILABLE)
        c->base.broken = true; /* 57P01 admin shutdown and the like end the session */
    int rc = nx_db_fail(call, kind, state, 0, "%s", msg);
    const char *constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
    if (constraint)
        call->err->constraint = nx_arena_strdup(call->arena, constraint);
    return rc;
}

/* ---- cancellation ---- */

/*
 * One cancellation, shared by the thread that sends it and the coroutine that waits for
 * it to be sent: the last of the two to let go frees it.
 */
typedef struct cancel_job {
    PGcancel *cancel;
    int done_fd; /* eventfd: the thread has sent the request */
    atomic_int refs;
} cancel_job;

static void cancel_put(cancel_job *j)
{
    if (atomic_fetch_sub(&j->refs, 1) == 1) {
        close(j->done_fd);
        PQfreeCancel(j->cancel);
        free(j);
    }
}

static void *cancel_main(void *arg)
{
    cancel_job *j = arg;
    char err[256];
    PQcancel(j->cancel, err, sizeof(err));
    uint64_t one = 1;
    ssize_t w = write(j->done_fd, &one, sizeof(one));
    (void)w;
    cancel_put(j);
    return NULL;
}

/* Asks the server to cancel what c runs, without blocking the worker. NULL if it cannot. */
static cancel_job *send_cancel(pg_conn *c)
{
    cancel_job *j = nx_xcalloc(1, sizeof(*j));
    j->cancel = PQgetCancel(c->pg);
    j->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!j->cancel || j->done_fd < 0) {
        if (j->done_fd >= 0)
            close(j->done_fd);
        PQfreeCancel(j->cancel);
        free(j);
        return NULL;
    }
    atomic_init(&j->refs, 2);
    if (nx_thread_detached(cancel_main, j, 64 * 1024) != 0) {
        atomic_init(&j->refs, 1);
        cancel_put(j);
        return NULL;
    }
    return j;
}

/*
 * Waits until the cancel request has been delivered. Until then it could still reach the
 * server after the connection went back to the pool, and cancel the next request's
 * statement instead; a connection whose cancellation is still in flight at the deadline
 * is closed rather than reused.
 */
static void cancel_finish(pg_conn *c, nx_db_call *drain, cancel_job *j)
{
    if (nx_wait_fd(drain->loop, j->done_fd, EPOLLIN, drain->deadline) <= 0)
        c->base.broken = true;
    cancel_put(j);
}

/* ---- waiting on the socket ---- */

/* Sends what libpq holds. NX_OK, or NX_ERR with err filled (the connection broken). */
static int flush(pg_conn *c, nx_db_call *call)
{
    for (;;) {
        int r = PQflush(c->pg);
        if (r == 0)
            return NX_OK;
        if (r < 0)
            return fail_conn(c, call, "sending to the server");
        int ev = nx_db_wait_watch(call, &c->watch, EPOLLIN | EPOLLOUT);
        if (ev <= 0) {
            /* Half a message may be on the wire: the session cannot be trusted. */
            c->base.broken = true;
            if (ev == NX_ERR)
                return fail_conn(c, call, "waiting on the socket");
            return nx_db_fail_deadline(call, "statement");
        }
        if ((ev & EPOLLIN) && !PQconsumeInput(c->pg))
            return fail_conn(c, call, "reading from the server");
    }
}

/*
 * The next result (NULL marks the end of one statement's results). NX_OK, NX_ERR (the
 * connection broke), or NX_DB_WAIT_TIMEOUT / NX_DB_WAIT_GONE when the call's time ran
 * out before it came.
 */
static int next_result(pg_conn *c, nx_db_call *call, PGresult **out)
{
    *out = NULL;
    while (PQisBusy(c->pg)) {
        int ev = nx_db_wait_watch(call, &c->watch, EPOLLIN);
        if (ev == NX_DB_WAIT_TIMEOUT || ev == NX_DB_WAIT_GONE)
            return ev;
        if (ev < 0)
            return fail_conn(c, call, "waiting on the socket");
        if (!PQconsumeInput(c->pg))
            return fail_conn(c, call, "reading from the server");
    }
    *out = PQgetResult(c->pg);
    return NX_OK;
}

/*
 * Reads a statement's results to their end, cancelling the statement once if the call's
 * time runs out first (the drain then gets CANCEL_DRAIN_MS of its own).
 */
typedef struct reader {
    pg_conn *c;
    nx_db_call *call;
    nx_db_call drain;
    cancel_job *job;
    bool timed_out;
} reader;

/*
 * The next result (NULL ends one statement's results): NX_OK, NX_ERR (the connection
 * failed, err filled), or NX_AGAIN when even the cancelled statement did not end in time
 * (the connection is marked broken).
 */
static int read_next(reader *r, PGresult **res)
{
    for (;;) {
        int w = next_result(r->c, r->job ? &r->drain : r->call, res);
        if (w != NX_DB_WAIT_TIMEOUT && w != NX_DB_WAIT_GONE)
            return w;
        r->timed_out = true;
        if (r->job || !(r->job = send_cancel(r->c))) {
            r->c->base.broken = true;
            return NX_AGAIN;
        }
        r->drain.gone = NULL;
        r->drain.deadline = nx_now_ms() + CANCEL_DRAIN_MS;
    }
}

static void read_end(reader *r)
{
    if (r->job)
        cancel_finish(r->c, &r->drain, r->job);
}

/* ---- connecting ---- */

/* Server notices (RAISE NOTICE, warnings) go to the log, not to the worker's stderr. */
static void on_notice(void *arg, const char *message)
{
    size_t n = strlen(message);
    while (n && message[n - 1] == '\n')
        n--;
    nx_log_info("postgresql: %.*s", (int)n, message);
}

static nx_db_conn *pg_connect(const nx_db_settings *s, nx_db_call *call)
{
    const char *keys[32], *vals[32];
    int n = 0;
    char port[16], options[64], *opts = NULL;
    snprintf(port, sizeof(port), "%d", s->port);
    /*
     * libpq resolves a host name itself, blocking the worker: the name is resolved here
     * (core/resolve.h) and its addresses given as hostaddr, one per copy of the name in
     * host, which libpq still uses for TLS verification and tries in order. A numeric host
     * goes in hostaddr alone; a socket folder or a list of hosts is libpq's.
     */
    char hosts[NX_RESOLVE_MAX * 256], addrs[NX_RESOLVE_MAX * NX_ADDR_LEN];
    if (!*s->host || s->host[0] == '/' || strchr(s->host, ',')) {
        keys[n] = "host", vals[n++] = s->host;
    } else if (nx_host_is_numeric(s->host)) {
        keys[n] = "hostaddr", vals[n++] = s->host;
    } else if (strlen(s->host) >= 256) {
        nx_db_fail(call, NX_DB_UNAVAILABLE, "08001", 0,
                   "database.host is longer than a host name can be");
        return NULL;
    } else {
        nx_addrs a;
        if (nx_db_resolve(call, s->host, &a) != NX_OK)
            return NULL;
        size_t hl = 0, al = 0;
        for (int i = 0; i < a.n; i++) {
            hl += (size_t)snprintf(hosts + hl, sizeof(hosts) - hl, "%s%s", i ? "," : "", s->host);
            al += (size_t)snprintf(addrs + al, sizeof(addrs) - al, "%s%s", i ? "," : "", a.addr[i]);
        }
        keys[n] = "host", vals[n++] = hosts;
        keys[n] = "hostaddr", vals[n++] = addrs;
    }
    keys[n] = "port", vals[n++] = port;
    if (*s->name)
        keys[n] = "dbname", vals[n++] = s->name;
    if (*s->user)
        keys[n] = "user", vals[n++] = s->user;
    if (*s->password)
        keys[n] = "password", vals[n++] = s->password;
    if (*s->application_name)
        keys[n] = "application_name", vals[n++] = s->application_name;
    keys[n] = "client_encoding", vals[n++] = "UTF8";
    if (s->statement_timeout_ms) {
        snprintf(options, sizeof(options), "-c statement_timeout=%llu",
                 (unsigned long long)s->statement_timeout_ms);
        keys[n] = "options", vals[n++] = options;
    }
    if (s->options && *s->options) {
        /* The URL's query: key=value pairs for libpq (sslmode, connect_timeout...). */
        opts = nx_xstrdup(s->options);
        for (char *save = NULL, *kv = strtok_r(opts, "&", &save); kv && n < 30;
             kv = strtok_r(NULL, "&", &save)) {
            char *eq = strchr(kv, '=');
            if (!eq || strncmp(kv, "host=", 5) == 0)
                continue;
            *eq = '\0';
            keys[n] = kv, vals[n++] = eq + 1;
        }
    }
    keys[n] = NULL, vals[n] = NULL;

    pg_conn *c = nx_xcalloc(1, sizeof(*c));
    c->pg = PQconnectStartParams(keys, vals, 0);
    free(opts);
    if (!c->pg) {
        free(c);
        nx_db_fail(call, NX_DB_UNAVAILABLE, "08001", 0, "out of memory");
        return NULL;
    }
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (PQstatus(c->pg) != CONNECTION_BAD && st != PGRES_POLLING_OK &&
           st != PGRES_POLLING_FAILED) {
        /* The socket may change between polls (another address is tried). */
        int ev =
            nx_db_wait(call, PQsocket(c->pg), st == PGRES_POLLING_READING ? EPOLLIN : EPOLLOUT);
        if (ev <= 0) {
            if (ev == NX_DB_WAIT_GONE)
                nx_db_fail(call, NX_DB_CANCELED, "08001", 0, "connecting: the client went away");
            else
                nx_db_fail(call, NX_DB_UNAVAILABLE, "08001", 0,
                           "connecting to PostgreSQL at %s:%d timed out", s->host, s->port);
            PQfinish(c->pg);
            free(c);
            return NULL;
        }
        st = PQconnectPoll(c->pg);
    }
    if (PQstatus(c->pg) != CONNECTION_OK) {
        nx_db_fail(call, NX_DB_UNAVAILABLE, "08001", 0, "connecting to PostgreSQL at %s:%d: %s",
                   s->host, s->port, PQerrorMessage(c->pg));
        PQfinish(c->pg);
        free(c);
        return NULL;
    }
    PQsetNoticeProcessor(c->pg, on_notice, NULL);
    if (PQsetnonblocking(c->pg, 1) != 0) {
        nx_db_fail(call, NX_DB_UNAVAILABLE, "08001", 0, "PQsetnonblocking: %s",
                   PQerrorMessage(c->pg));
        PQfinish(c->pg);
        free(c);
        return NULL;
    }
    if (nx_watch_open(call->loop, &c->watch, PQsocket(c->pg)) != NX_OK) {
        nx_db_fail(call, NX_DB_UNAVAILABLE, "08001", errno, "epoll: %s", strerror(errno));
        PQfinish(c->pg);
        free(c);
        return NULL;
    }
    c->base.drv = &nx_db_pg_driver;
    return &c->base;
}

static void pg_close(nx_db_conn *base)
{
    pg_conn *c = (pg_conn *)base;
    nx_db_cache_clear(base); /* statements die with the session: nothing to send */
    nx_watch_close(&c->watch);
    PQfinish(c->pg);
    free(c);
}

static void pg_uncache(nx_db_conn *base, nx_db_cached *e)
{
    /* A prepared statement lives in the server session; entries are only dropped when
     * the cache is full or the session ends, and a full cache is rare enough that the
     * statements are left to the session's end. */
    e->handle = NULL;
}

static bool pg_alive(nx_db_conn *base)
{
    pg_conn *c = (pg_conn *)base;
    if (PQstatus(c->pg) != CONNECTION_OK)
        return false;
    char b;
    ssize_t r = recv(PQsocket(c->pg), &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r == 0)
        return false; /* the server closed it */
    if (r < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK;
    /* Something arrived unasked on an idle session: in practice the server's "terminating
     * connection" notice, whose end of file may not have arrived yet. Nexus listens to no
     * notifications, so the session is given up rather than trusted. */
    return false;
}

/* ---- simple queries (scripts, transactions, pings) ---- */

static int pg_script(nx_db_conn *base, nx_db_call *call, const char *sql)
{
    pg_conn *c = (pg_conn *)base;
    if (!PQsendQuery(c->pg, sql))
        return fail_conn(c, call, "sending a query");
    if (flush(c, call) != NX_OK)
        return NX_ERR;
    int rc = NX_OK;
    reader rd = {.c = c, .call = call, .drain = *call};
    for (;;) {
        PGresult *res;
        int w = read_next(&rd, &res);
        if (w == NX_AGAIN)
            break;
        if (w != NX_OK) {
            rc = NX_ERR;
            break;
        }
        if (!res)
            break;
        ExecStatusType st = PQresultStatus(res);
        if (rc == NX_OK && (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE))
            rc = fail_result(c, call, res);
        else if (rc == NX_OK && strcmp(sql, "COMMIT") == 0 &&
                 strcmp(PQcmdStatus(res), "ROLLBACK") == 0)
            rc = nx_db_fail(call, NX_DB_QUERY, "25P02", 0,
                            "a statement of the transaction failed, so COMMIT rolled it back");
        PQclear(res);
    }
    read_end(&rd);
    if (rd.timed_out)
        return nx_db_fail_deadline(call, "statement");
    return rc;
}

static int pg_ping(nx_db_conn *base, nx_db_call *call)
{
    return pg_script(base, call, "SELECT 1");
}

/* ---- statements, pipelined ---- */

/* Per statement: whether this batch prepares it, and its prepared name. */
typedef struct plan {
    nx_db_cached *e; /* NULL: the unnamed statement */
    bool prepare;
    int want; /* parameters the statement uses */
    char name[24];
} plan;

static int send_params(pg_conn *c, nx_db_call *call, const nx_db_stmt *s, const plan *p)
{
    size_t n = s->nparams;
    const char **vals = NULL;
    int *lens = NULL, *fmts = NULL;
    if (n) {
        vals = nx_arena_alloc(call->arena, n * sizeof(*vals));
        lens = nx_arena_alloc(call->arena, n * sizeof(*lens));
        fmts = nx_arena_alloc(call->arena, n * sizeof(*fmts));
    }
    for (size_t i = 0; i < n; i++) {
        const nx_db_value *v = &s->params[i];
        lens[i] = 0;
        fmts[i] = 0;
        switch (v->type) {
        case NX_DB_INT: vals[i] = nx_arena_printf(call->arena, "%lld", (long long)v->v.i); break;
        case NX_DB_FLOAT: vals[i] = nx_arena_printf(call->arena, "%.17g", v->v.f); break;
        case NX_DB_BOOL: vals[i] = v->v.b ? "t" : "f"; break;
        case NX_DB_TEXT:
            if (memchr(v->v.s.ptr, '\0', v->v.s.len))
                return nx_db_fail(call, NX_DB_QUERY, "22021", 0,
                                  "parameter $%zu: text cannot hold a NUL byte", i + 1);
            vals[i] = nx_arena_strndup(call->arena, v->v.s.ptr, v->v.s.len);
            break;
        case NX_DB_BLOB:
            vals[i] = v->v.s.ptr;
            lens[i] = (int)v->v.s.len;
            fmts[i] = 1; /* binary: the bytes as they are */
            break;
        default: vals[i] = NULL; break;
        }
    }
    if (!PQsendQueryPrepared(c->pg, p->name, (int)n, vals, lens, fmts, 0))
        return fail_conn(c, call, "sending a statement");
    return NX_OK;
}

static nx_db_value *set_value(nx_db_result *r, nx_db_value *v, Oid type, const char *text, int len)
{
    switch (type) {
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
    case OID_OID:
        v->type = NX_DB_INT;
        v->v.i = strtoll(text, NULL, 10);
        break;
    case OID_FLOAT4:
    case OID_FLOAT8:
        v->type = NX_DB_FLOAT;
        v->v.f = strtod(text, NULL);
        break;
    case OID_BOOL:
        v->type = NX_DB_BOOL;
        v->v.b = text[0] == 't';
        break;
    case OID_BYTEA: {
        size_t n = 0;
        unsigned char *raw = PQunescapeBytea((const unsigned char *)text, &n);
        nx_db_result_set_bytes(r, v, NX_DB_BLOB, (const char *)raw, n);
        PQfreemem(raw);
        break;
    }
    default: nx_db_result_set_bytes(r, v, NX_DB_TEXT, text, (size_t)len); break;
    }
    return v;
}

static nx_db_result *copy_result(nx_arena *a, const PGresult *res)
{
    int ncols = PQnfields(res), nrows = PQntuples(res);
    nx_db_result *r = nx_db_result_new(a, (size_t)ncols);
    Oid types[64];
    Oid *t = ncols <= 64 ? types : nx_arena_alloc(a, (size_t)ncols * sizeof(Oid));
    for (int i = 0; i < ncols; i++) {
        const char *name = PQfname(res, i);
        nx_db_result_set_col(r, (size_t)i, name, strlen(name));
        t[i] = PQftype(res, i);
    }
    for (int row = 0; row < nrows; row++) {
        nx_db_value *vals = nx_db_result_add_row(r);
        for (int i = 0; i < ncols; i++)
            if (!PQgetisnull(res, row, i))
                set_value(r, &vals[i], t[i], PQgetvalue(res, row, i), PQgetlength(res, row, i));
    }
    /* The count of an INSERT, UPDATE or DELETE (a SELECT's is its row count: not that). */
    const char *affected = PQcmdTuples((PGresult *)res);
    if (affected && *affected && strncmp(PQcmdStatus((PGresult *)res), "SELECT", 6) != 0)
        nx_db_result_set_affected(r, strtoll(affected, NULL, 10));
    return r;
}

/* Highest $N of a statement, to check the parameter count before the server does. */
static int count_params(nx_db_call *call, const char *sql)
{
    char why[160];
    int highest = 0;
    char *t = nx_db_translate(sql, NX_DB_PH_QNUM, NULL, 0, NULL, &highest, why, sizeof(why));
    if (!t)
        return nx_db_fail(call, NX_DB_MISUSE, NULL, 0, "%s", why), -1;
    free(t);
    return highest;
}

static int run_once(nx_db_conn *base, nx_db_call *call, nx_db_stmt *stmts, size_t n)
{
    pg_conn *c = (pg_conn *)base;
    plan *plans = nx_arena_calloc(call->arena, n ? n : 1, sizeof(*plans));

    /* Everything is checked before anything is sent. A statement new to the connection is
     * prepared under a name and kept; once the cache is full, further new ones are
     * prepared as the unnamed statement, which each Parse replaces, in the same round trip.
     * The cache is never emptied here, so no plan can point to a freed entry. */
    for (size_t i = 0; i < n; i++) {
        plan *p = &plans[i];
        p->e = nx_db_cache_find(base, stmts[i].sql);
        if (p->e) {
            p->want = (int)(intptr_t)p->e->handle - 1;
            snprintf(p->name, sizeof(p->name), "nx%u", p->e->id);
        } else {
            p->want = count_params(call, stmts[i].sql);
            p->prepare = true;
            if (p->want >= 0 && base->ncached < NX_DB_CACHE_MAX) {
                p->e = nx_db_cache_add(base, stmts[i].sql);
                p->e->handle = (void *)(intptr_t)(p->want + 1); /* never NULL */
                snprintf(p->name, sizeof(p->name), "nx%u", p->e->id);
            }
        }
        if (p->want < 0 || (size_t)p->want != stmts[i].nparams) {
            /* Nothing was sent: what this batch added to the cache is not on the server. */
            for (size_t k = 0; k <= i; k++)
                if (plans[k].prepare && plans[k].e)
                    nx_db_cache_remove(base, plans[k].e);
            if (p->want < 0)
                return NX_ERR;
            return nx_db_fail(call, NX_DB_MISUSE, NULL, 0,
                              "the statement uses %d parameter(s) and %zu were given: %.120s",
                              p->want, stmts[i].nparams, stmts[i].sql);
        }
    }

    if (!PQenterPipelineMode(c->pg))
        return fail_conn(c, call, "entering pipeline mode");
    for (size_t i = 0; i < n; i++) {
        plan *p = &plans[i];
        if (p->prepare && !PQsendPrepare(c->pg, p->name, stmts[i].sql, 0, NULL))
            return fail_conn(c, call, "sending a statement");
        if (send_params(c, call, &stmts[i], p) != NX_OK) {
            /* Only a parameter was refused; the connection is fine, but what was queued
             * must not run: drop the pipeline by closing. */
            c->base.broken = true;
            return NX_ERR;
        }
    }
    if (!PQpipelineSync(c->pg))
        return fail_conn(c, call, "sending a statement");
    if (flush(c, call) != NX_OK)
        return NX_ERR;

    /* Results come back in order: per statement, its Parse (when sent) then its rows,
     * each followed by a NULL; then the Sync. */
    int rc = NX_OK;
    reader rd = {.c = c, .call = call, .drain = *call};
    size_t i = 0;
    bool in_prepare = n && plans[0].prepare;
    for (;;) {
        PGresult *res;
        int w = read_next(&rd, &res);
        if (w == NX_AGAIN)
            break;
        if (w != NX_OK) {
            rc = NX_ERR;
            break;
        }
        if (!res) {
            /* One step's results are over. */
            if (in_prepare) {
                in_prepare = false;
            } else if (i < n) {
                i++;
                in_prepare = i < n && plans[i].prepare;
            }
            continue;
        }
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            break;
        }
        if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE) {
            if (rc == NX_OK)
                rc = fail_result(c, call, res);
            /* A failed Parse leaves no statement on the server. */
            if (i < n && plans[i].prepare && in_prepare && plans[i].e)
                plans[i].e->handle = (void *)(intptr_t)-1;
        } else if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
            if (!in_prepare && i < n && rc == NX_OK)
                stmts[i].result = copy_result(call->arena, res);
        } else if (st != PGRES_PIPELINE_ABORTED && rc == NX_OK) {
            rc = nx_db_fail(call, NX_DB_QUERY, NULL, 0, "unexpected result %s", PQresStatus(st));
        }
        PQclear(res);
        if (PQstatus(c->pg) == CONNECTION_BAD) {
            if (rc == NX_OK)
                rc = fail_conn(c, call, "connection lost");
            c->base.broken = true;
            break;
        }
    }
    if (!c->base.broken && !PQexitPipelineMode(c->pg))
        c->base.broken = true;
    /* Statements whose Parse failed, or never ran, are not on the server: forget them. */
    for (size_t k = 0; k < n; k++) {
        if (plans[k].prepare && plans[k].e &&
            ((intptr_t)plans[k].e->handle == -1 || (rc != NX_OK && !stmts[k].result))) {
            plans[k].e->handle = NULL;
            nx_db_cache_remove(base, plans[k].e);
            for (size_t j = k + 1; j < n; j++)
                if (plans[j].e == plans[k].e)
                    plans[j].e = NULL;
        }
    }
    read_end(&rd);
    if (rd.timed_out) {
        /* Whatever the drain said (57014, mostly), the call ran out of time. */
        for (size_t k = 0; k < n; k++)
            stmts[k].result = NULL;
        rc = nx_db_fail_deadline(call, "statement");
    }
    return rc;
}

/*
 * A statement prepared earlier can go stale under the connection: the session dropped it
 * (DISCARD ALL, DEALLOCATE: 26000), or its table changed shape (0A000, "cached plan must not
 * change result type"). Outside a transaction the failed batch changed nothing, so the
 * statements are prepared again and the batch runs once more.
 */
static int pg_run(nx_db_conn *base, nx_db_call *call, nx_db_stmt *stmts, size_t n)
{
    int rc = run_once(base, call, stmts, n);
    if (rc == NX_OK || base->in_tx || base->broken)
        return rc;
    if (strcmp(call->err->sqlstate, "26000") != 0 && strcmp(call->err->sqlstate, "0A000") != 0)
        return rc;
    if (pg_script(base, call, "DEALLOCATE ALL") != NX_OK)
        return NX_ERR;
    nx_db_cache_clear(base);
    return run_once(base, call, stmts, n);
}

const nx_db_driver nx_db_pg_driver = {
    .name = "postgresql",
    .connect = pg_connect,
    .close = pg_close,
    .alive = pg_alive,
    .ping = pg_ping,
    .run = pg_run,
    .script = pg_script,
    .begin_sql = "BEGIN",
    .uncache = pg_uncache,
};
