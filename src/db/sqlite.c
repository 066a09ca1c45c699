/*
 * sqlite.c - the embedded SQLite driver.
 *
 * SQLite runs inside the worker, so a statement occupies it while it runs: the deadline
 * is enforced from inside the engine by a progress handler. What would block is the file
 * lock that several worker processes share: no busy handler is installed (SQLite would
 * sleep the whole worker), so a locked database answers SQLITE_BUSY at once and the
 * statement is retried after a short sleep that parks only its coroutine, with backoff,
 * until the call's deadline. The database runs in WAL mode, so readers never wait for the
 * writer; transactions begin IMMEDIATE, taking the write lock up front, so a transaction
 * never fails half-way on a lock another process holds.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "core/util.h"
#include "db/db_impl.h"

typedef struct sq_conn {
    nx_db_conn base;
    sqlite3 *db;
    uint64_t deadline; /* of the statement running, for the progress handler */
} sq_conn;

/* Interrupts a statement running past its deadline (checked every 4096 VM steps). */
static int on_progress(void *arg)
{
    sq_conn *c = arg;
    return c->deadline && nx_now_ms() >= c->deadline;
}

static const char *sqlstate_of(int ext)
{
    switch (ext) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_ROWID: return "23505";
    case SQLITE_CONSTRAINT_NOTNULL: return "23502";
    case SQLITE_CONSTRAINT_FOREIGNKEY: return "23503";
    case SQLITE_CONSTRAINT_CHECK: return "23514";
    default: return (ext & 0xff) == SQLITE_CONSTRAINT ? "23000" : NULL;
    }
}

/*
 * A lock held by another connection: SQLITE_BUSY itself or one of its extended codes
 * (BUSY_RECOVERY while another process rebuilds the WAL index, BUSY_SNAPSHOT, ...), which
 * sqlite3_extended_result_codes makes every call return.
 */
static bool is_busy(int rc)
{
    return (rc & 0xff) == SQLITE_BUSY;
}

static int fail_sqlite(sq_conn *c, nx_db_call *call, int rc)
{
    int ext = sqlite3_extended_errcode(c->db);
    const char *msg = sqlite3_errmsg(c->db);
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
        return nx_db_fail(call, NX_DB_CONSTRAINT, sqlstate_of(ext), ext, "%s", msg);
    case SQLITE_INTERRUPT: return nx_db_fail_deadline(call, "statement");
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return nx_db_fail(call, NX_DB_UNAVAILABLE, NULL, ext,
                          "the database stayed locked by another writer: %s", msg);
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_READONLY:
    case SQLITE_NOMEM: return nx_db_fail(call, NX_DB_UNAVAILABLE, NULL, ext, "%s", msg);
    case SQLITE_MISUSE:
    case SQLITE_RANGE: return nx_db_fail(call, NX_DB_MISUSE, NULL, ext, "%s", msg);
    default: return nx_db_fail(call, NX_DB_QUERY, "42000", ext, "%s", msg);
    }
}

/*
 * Waits before retrying a statement that found the database locked: 1, 2, 4 ... 32 ms.
 * NX_OK to retry, NX_ERR (err filled) when the deadline or the client is gone.
 */
static int backoff(sq_conn *c, nx_db_call *call, unsigned *attempt, int rc)
{
    uint64_t now = nx_now_ms();
    uint64_t delay = 1u << (*attempt < 5 ? *attempt : 5);
    (*attempt)++;
    if (call->deadline && now + delay >= call->deadline)
        return fail_sqlite(c, call, rc);
    int w = nx_db_sleep_until(call, nx_loop_now(call->loop) + delay);
    if (w == NX_DB_WAIT_GONE)
        return nx_db_fail_deadline(call, "statement");
    if (w != NX_OK)
        return fail_sqlite(c, call, rc);
    return NX_OK;
}

/* Runs a statement that gives no rows (PRAGMA, BEGIN, DDL) with the busy retry. */
static int step_plain(sq_conn *c, nx_db_call *call, sqlite3_stmt *st)
{
    unsigned attempt = 0;
    for (;;) {
        c->deadline = call->deadline;
        int rc = sqlite3_step(st);
        while (rc == SQLITE_ROW)
            rc = sqlite3_step(st);
        c->deadline = 0;
        if (rc == SQLITE_DONE) {
            sqlite3_reset(st);
            return NX_OK;
        }
        if (!is_busy(rc)) {
            fail_sqlite(c, call, rc); /* before the reset, which clears the message */
            sqlite3_reset(st);
            return NX_ERR;
        }
        sqlite3_reset(st);
        if (backoff(c, call, &attempt, rc) != NX_OK)
            return NX_ERR;
    }
}

static int sq_script(nx_db_conn *base, nx_db_call *call, const char *sql)
{
    sq_conn *c = (sq_conn *)base;
    const char *tail = sql;
    while (tail && *tail) {
        sqlite3_stmt *st = NULL;
        const char *next = NULL;
        unsigned attempt = 0;
        int rc;
        while (is_busy(rc = sqlite3_prepare_v2(c->db, tail, -1, &st, &next)))
            if (backoff(c, call, &attempt, rc) != NX_OK)
                return NX_ERR;
        if (rc != SQLITE_OK)
            return fail_sqlite(c, call, rc);
        tail = next;
        if (!st)
            break; /* only whitespace or comments were left */
        rc = step_plain(c, call, st);
        sqlite3_finalize(st);
        if (rc != NX_OK)
            return NX_ERR;
    }
    return NX_OK;
}

static void sq_close(nx_db_conn *base)
{
    sq_conn *c = (sq_conn *)base;
    nx_db_cache_clear(base);
    sqlite3_close_v2(c->db);
    free(c);
}

static nx_db_conn *sq_connect(const nx_db_settings *s, nx_db_call *call)
{
    bool memory = strcmp(s->path, ":memory:") == 0;
    if (!memory && nx_mkdirs_for(s->path, 0750) != 0) {
        nx_db_fail(call, NX_DB_UNAVAILABLE, NULL, errno,
                   "cannot create the folder of database.path %s: %s", s->path, strerror(errno));
        return NULL;
    }
    sq_conn *c = nx_xcalloc(1, sizeof(*c));
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(s->path, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        nx_db_fail(call, NX_DB_UNAVAILABLE, NULL, rc, "cannot open SQLite database %s: %s", s->path,
                   c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        sqlite3_close_v2(c->db);
        free(c);
        return NULL;
    }
    c->base.drv = &nx_db_sqlite_driver;
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_progress_handler(c->db, 4096, on_progress, c);
    /* WAL lets readers run beside the writer; NORMAL durability is what WAL is designed
     * for (a power cut may lose the last commits, never corrupt the file). */
    const char *setup = memory ? "PRAGMA foreign_keys = ON;"
                               : "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; "
                                 "PRAGMA foreign_keys = ON;";
    if (sq_script(&c->base, call, setup) != NX_OK) {
        char msg[sizeof(call->err->message)];
        snprintf(msg, sizeof(msg), "%s", call->err->message);
        nx_db_fail(call, NX_DB_UNAVAILABLE, NULL, call->err->code, "SQLite database %s: %s",
                   s->path, msg);
        sq_close(&c->base);
        return NULL;
    }
    return &c->base;
}

static bool sq_alive(nx_db_conn *base)
{
    return true;
}

static int sq_ping(nx_db_conn *base, nx_db_call *call)
{
    return sq_script(base, call, "SELECT 1");
}

static void sq_uncache(nx_db_conn *base, nx_db_cached *e)
{
    sqlite3_finalize(e->handle);
    e->handle = NULL;
}

static sqlite3_stmt *prepare(sq_conn *c, nx_db_call *call, const char *sql, size_t nparams)
{
    nx_db_cached *e = nx_db_cache_find(&c->base, sql);
    if (e)
        return e->handle;
    char why[160];
    int highest = 0;
    char *text = nx_db_translate(sql, NX_DB_PH_QNUM, NULL, 0, NULL, &highest, why, sizeof(why));
    if (!text) {
        nx_db_fail(call, NX_DB_MISUSE, NULL, 0, "%s", why);
        return NULL;
    }
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    unsigned attempt = 0;
    int rc;
    /* Preparing reads the schema, which another process may hold locked for a moment. */
    while (
        is_busy(rc = sqlite3_prepare_v3(c->db, text, -1, SQLITE_PREPARE_PERSISTENT, &st, &tail))) {
        if (backoff(c, call, &attempt, rc) != NX_OK) {
            free(text);
            return NULL;
        }
    }
    bool more = rc == SQLITE_OK && tail && tail[strspn(tail, " \t\r\n;")];
    free(text); /* tail pointed into it */
    if (rc != SQLITE_OK) {
        fail_sqlite(c, call, rc);
        return NULL;
    }
    if (!st) {
        nx_db_fail(call, NX_DB_MISUSE, NULL, 0, "the statement is empty");
        return NULL;
    }
    if (more) {
        sqlite3_finalize(st);
        nx_db_fail(call, NX_DB_MISUSE, NULL, 0,
                   "one statement per call: the text goes on after the first ';'");
        return NULL;
    }
    e = nx_db_cache_add(&c->base, sql);
    e->handle = st;
    return st;
}

static int bind(sq_conn *c, nx_db_call *call, sqlite3_stmt *st, const nx_db_value *p, size_t n)
{
    int want = sqlite3_bind_parameter_count(st);
    if ((size_t)want != n)
        return nx_db_fail(call, NX_DB_MISUSE, NULL, 0,
                          "the statement uses %d parameter(s) and %zu were given", want, n);
    for (size_t i = 0; i < n; i++) {
        int idx = (int)i + 1, rc;
        switch (p[i].type) {
        case NX_DB_INT: rc = sqlite3_bind_int64(st, idx, p[i].v.i); break;
        case NX_DB_FLOAT: rc = sqlite3_bind_double(st, idx, p[i].v.f); break;
        case NX_DB_BOOL: rc = sqlite3_bind_int(st, idx, p[i].v.b); break;
        case NX_DB_TEXT:
            rc = sqlite3_bind_text64(st, idx, p[i].v.s.ptr, p[i].v.s.len, SQLITE_STATIC,
                                     SQLITE_UTF8);
            break;
        case NX_DB_BLOB:
            rc = sqlite3_bind_blob64(st, idx, p[i].v.s.ptr, p[i].v.s.len, SQLITE_STATIC);
            break;
        default: rc = sqlite3_bind_null(st, idx); break;
        }
        if (rc != SQLITE_OK)
            return fail_sqlite(c, call, rc);
    }
    return NX_OK;
}

static bool is_bool_decl(const char *decl)
{
    return decl && (strcasecmp(decl, "BOOLEAN") == 0 || strcasecmp(decl, "BOOL") == 0);
}

static nx_db_result *columns(sqlite3_stmt *st, nx_arena *a, bool *bools)
{
    int n = sqlite3_column_count(st);
    nx_db_result *r = nx_db_result_new(a, (size_t)n);
    for (int i = 0; i < n; i++) {
        const char *name = sqlite3_column_name(st, i);
        nx_db_result_set_col(r, (size_t)i, name, strlen(name));
        bools[i] = is_bool_decl(sqlite3_column_decltype(st, i));
    }
    return r;
}

static void read_row(nx_db_result *r, sqlite3_stmt *st, const bool *bools)
{
    nx_db_value *row = nx_db_result_add_row(r);
    size_t n = nx_db_cols(r);
    for (size_t i = 0; i < n; i++) {
        int col = (int)i;
        switch (sqlite3_column_type(st, col)) {
        case SQLITE_INTEGER:
            if (bools[i]) {
                row[i].type = NX_DB_BOOL;
                row[i].v.b = sqlite3_column_int64(st, col) != 0;
            } else {
                row[i].type = NX_DB_INT;
                row[i].v.i = sqlite3_column_int64(st, col);
            }
            break;
        case SQLITE_FLOAT:
            row[i].type = NX_DB_FLOAT;
            row[i].v.f = sqlite3_column_double(st, col);
            break;
        case SQLITE_TEXT: {
            const char *t = (const char *)sqlite3_column_text(st, col);
            nx_db_result_set_bytes(r, &row[i], NX_DB_TEXT, t,
                                   (size_t)sqlite3_column_bytes(st, col));
            break;
        }
        case SQLITE_BLOB: {
            const char *b = sqlite3_column_blob(st, col);
            nx_db_result_set_bytes(r, &row[i], NX_DB_BLOB, b,
                                   (size_t)sqlite3_column_bytes(st, col));
            break;
        }
        default: break;
        }
    }
}

static int run_one(sq_conn *c, nx_db_call *call, nx_db_stmt *s)
{
    sqlite3_stmt *st = prepare(c, call, s->sql, s->nparams);
    if (!st)
        return NX_ERR;
    if (bind(c, call, st, s->params, s->nparams) != NX_OK) {
        sqlite3_clear_bindings(st);
        return NX_ERR;
    }
    int ncols = sqlite3_column_count(st);
    bool bools_small[32];
    bool *bools = ncols <= 32 ? bools_small : nx_arena_alloc(call->arena, (size_t)ncols);
    unsigned attempt = 0;
    int rc;
    for (;;) {
        nx_db_result *r = columns(st, call->arena, bools);
        c->deadline = call->deadline;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            read_row(r, st, bools);
        c->deadline = 0;
        if (rc == SQLITE_DONE) {
            if (!sqlite3_stmt_readonly(st))
                nx_db_result_set_affected(r, sqlite3_changes64(c->db));
            s->result = r;
            break;
        }
        /* Locked before it produced anything: nothing happened yet, so try it again. */
        if (is_busy(rc) && nx_db_rows(r) == 0) {
            sqlite3_reset(st);
            if (backoff(c, call, &attempt, rc) == NX_OK)
                continue;
            sqlite3_clear_bindings(st);
            return NX_ERR;
        }
        fail_sqlite(c, call, rc);
        break;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return s->result ? NX_OK : NX_ERR;
}

static int sq_run(nx_db_conn *base, nx_db_call *call, nx_db_stmt *stmts, size_t n)
{
    sq_conn *c = (sq_conn *)base;
    for (size_t i = 0; i < n; i++)
        if (run_one(c, call, &stmts[i]) != NX_OK)
            return NX_ERR;
    return NX_OK;
}

const nx_db_driver nx_db_sqlite_driver = {
    .name = "sqlite",
    .connect = sq_connect,
    .close = sq_close,
    .alive = sq_alive,
    .ping = sq_ping,
    .run = sq_run,
    .script = sq_script,
    .begin_sql = "BEGIN IMMEDIATE",
    .uncache = sq_uncache,
};
