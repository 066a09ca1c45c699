/*
 * db.c - the database API of <nexus/db.h>, the per-worker pool, results and errors.
 *
 * The pool holds up to pool_size connections idle, and opens up to max_overflow more
 * under load (closed again when returned). A caller finding every connection busy queues
 * for at most pool_timeout; a returned connection goes straight to the first in the queue.
 * Connections are made on first use, checked on checkout (a dead socket costs no round
 * trip; one idle for a while is pinged when pool_pre_ping is on), and closed when older
 * than pool_recycle. A connection that failed in a way that leaves it unusable is closed
 * instead of returned, so a database restart costs the requests in flight an error and
 * nothing after: the next checkout opens a fresh one.
 */
#include "db/db_impl.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <nexus/arena.h>
#include <nexus/log.h>

#include "core/arena.h"
#include "core/coro.h"
#include "core/util.h"
#include "core/wait.h"
#include "http/exchange.h"

/* A checkout pings a connection that has been idle this long (with pool_pre_ping). */
#define PING_IDLE_MS 5000
/* The time given to ROLLBACK at the end of a request whose own deadline may be over. */
#define CLEANUP_MS 5000
#define CACHE_BUCKETS 64

typedef struct pool_waiter {
    struct pool_waiter *next;
    nx_wake wake;
    nx_db_conn *granted; /* a connection handed over, or NULL: try again */
} pool_waiter;

static struct {
    const nx_db_settings *s;
    const nx_db_driver *drv;
    nx_loop *loop;
    nx_db_conn *idle; /* most recently used first */
    int nidle;
    int nopen; /* open or being opened */
    pool_waiter *head, *tail;
    bool started;
} P;

/* ---- errors ----------------------------------------------------------------------- */

int nx_db_fail(nx_db_call *call, nx_db_error_kind kind, const char *sqlstate, int code,
               const char *fmt, ...)
{
    nx_db_error *e = call->err;
    e->kind = kind;
    e->code = code;
    e->constraint = NULL;
    snprintf(e->sqlstate, sizeof(e->sqlstate), "%s", sqlstate ? sqlstate : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    /* Backends end messages with a newline; logs want one line. */
    size_t n = strlen(e->message);
    while (n && (e->message[n - 1] == '\n' || e->message[n - 1] == ' '))
        e->message[--n] = '\0';
    return NX_ERR;
}

nx_db_error_kind nx_db_kind_of_sqlstate(const char *st)
{
    if (!st || strlen(st) != 5)
        return NX_DB_QUERY;
    if (strncmp(st, "08", 2) == 0 || strncmp(st, "53", 2) == 0 || strcmp(st, "57P01") == 0 ||
        strcmp(st, "57P02") == 0 || strcmp(st, "57P03") == 0 || strncmp(st, "58", 2) == 0)
        return NX_DB_UNAVAILABLE;
    if (strcmp(st, "57014") == 0)
        return NX_DB_TIMEOUT;
    if (strncmp(st, "23", 2) == 0)
        return NX_DB_CONSTRAINT;
    if (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0 || strcmp(st, "55P03") == 0)
        return NX_DB_CONFLICT;
    return NX_DB_QUERY;
}

int nx_db_fail_deadline(nx_db_call *call, const char *what)
{
    if (call->gone && *call->gone)
        return nx_db_fail(call, NX_DB_CANCELED, "57014", 0, "%s cancelled: the client went away",
                          what);
    return nx_db_fail(call, NX_DB_TIMEOUT, "57014", 0, "%s cancelled: %s", what,
                      call->statement_bound ? "database.statement_timeout passed"
                                            : "the request's time ran out");
}

/* ---- waiting ---------------------------------------------------------------------- */

static bool gone(const nx_db_call *call)
{
    return call->gone && *call->gone;
}

int nx_db_wait(nx_db_call *call, int fd, uint32_t events)
{
    if (gone(call))
        return NX_DB_WAIT_GONE;
    if (call->deadline && nx_loop_now(call->loop) >= call->deadline)
        return NX_DB_WAIT_TIMEOUT;
    int ev = nx_wait_fd(call->loop, fd, events, call->deadline);
    if (ev > 0)
        return ev;
    if (ev == NX_ERR)
        return NX_ERR;
    return gone(call) ? NX_DB_WAIT_GONE : NX_DB_WAIT_TIMEOUT;
}

int nx_db_wait_watch(nx_db_call *call, nx_watch *wt, uint32_t events)
{
    if (gone(call))
        return NX_DB_WAIT_GONE;
    if (call->deadline && nx_loop_now(call->loop) >= call->deadline)
        return NX_DB_WAIT_TIMEOUT;
    int ev = nx_watch_wait(wt, events, call->deadline);
    if (ev > 0)
        return ev;
    if (ev == NX_ERR)
        return NX_ERR;
    return gone(call) ? NX_DB_WAIT_GONE : NX_DB_WAIT_TIMEOUT;
}

int nx_db_resolve(nx_db_call *call, const char *host, nx_addrs *out)
{
    char why[300];
    int rc = gone(call) ? NX_RESOLVE_LATE
                        : nx_resolve(call->loop, host, out, call->deadline, why, sizeof(why));
    if (rc == NX_OK)
        return NX_OK;
    if (rc == NX_ERR)
        return nx_db_fail(call, NX_DB_UNAVAILABLE, "08001", 0, "%s", why);
    snprintf(why, sizeof(why), "resolving %s", host);
    return nx_db_fail_deadline(call, why); /* TIMEOUT, or CANCELED when the client left */
}

int nx_db_sleep_until(nx_db_call *call, uint64_t when)
{
    if (gone(call))
        return NX_DB_WAIT_GONE;
    if (nx_wait_until(call->loop, when) != NX_OK)
        return NX_ERR;
    return gone(call) ? NX_DB_WAIT_GONE : NX_OK;
}

/* ---- results ---------------------------------------------------------------------- */

struct nx_db_result {
    nx_arena *arena;
    size_t nrows, ncols, cap;
    char **names;
    nx_db_value *vals; /* nrows * ncols */
    int64_t affected;
};

nx_db_result *nx_db_result_new(nx_arena *a, size_t ncols)
{
    nx_db_result *r = nx_arena_calloc(a, 1, sizeof(*r));
    r->arena = a;
    r->ncols = ncols;
    r->names = ncols ? nx_arena_calloc(a, ncols, sizeof(char *)) : NULL;
    return r;
}

void nx_db_result_set_col(nx_db_result *r, size_t i, const char *name, size_t len)
{
    if (i < r->ncols)
        r->names[i] = nx_arena_strndup(r->arena, name, len);
}

nx_db_value *nx_db_result_add_row(nx_db_result *r)
{
    if (r->nrows == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        nx_db_value *v = nx_arena_alloc(r->arena, cap * r->ncols * sizeof(*v) + 1);
        if (r->nrows)
            memcpy(v, r->vals, r->nrows * r->ncols * sizeof(*v));
        r->vals = v;
        r->cap = cap;
    }
    nx_db_value *row = r->vals + r->nrows * r->ncols;
    memset(row, 0, r->ncols * sizeof(*row)); /* NX_DB_NULL is 0 */
    r->nrows++;
    return row;
}

void nx_db_result_set_bytes(nx_db_result *r, nx_db_value *v, nx_db_type type, const char *p,
                            size_t len)
{
    v->type = type;
    v->v.s.ptr = nx_arena_strndup(r->arena, p ? p : "", p ? len : 0);
    v->v.s.len = p ? len : 0;
}

void nx_db_result_set_affected(nx_db_result *r, int64_t n)
{
    r->affected = n;
}

size_t nx_db_rows(const nx_db_result *r)
{
    return r ? r->nrows : 0;
}

size_t nx_db_cols(const nx_db_result *r)
{
    return r ? r->ncols : 0;
}

const char *nx_db_col_name(const nx_db_result *r, size_t col)
{
    return r && col < r->ncols ? r->names[col] : NULL;
}

int nx_db_col_index(const nx_db_result *r, const char *name)
{
    for (size_t i = 0; r && i < r->ncols; i++)
        if (r->names[i] && strcmp(r->names[i], name) == 0)
            return (int)i;
    return -1;
}

int64_t nx_db_affected(const nx_db_result *r)
{
    return r ? r->affected : 0;
}

static const nx_db_value null_value = {.type = NX_DB_NULL};

const nx_db_value *nx_db_value_at(const nx_db_result *r, size_t row, size_t col)
{
    if (!r || row >= r->nrows || col >= r->ncols)
        return &null_value;
    return &r->vals[row * r->ncols + col];
}

bool nx_db_is_null(const nx_db_result *r, size_t row, size_t col)
{
    return nx_db_value_at(r, row, col)->type == NX_DB_NULL;
}

int64_t nx_db_i64(const nx_db_result *r, size_t row, size_t col)
{
    const nx_db_value *v = nx_db_value_at(r, row, col);
    switch (v->type) {
    case NX_DB_INT: return v->v.i;
    case NX_DB_FLOAT: return (int64_t)v->v.f;
    case NX_DB_BOOL: return v->v.b;
    case NX_DB_TEXT: return strtoll(v->v.s.ptr, NULL, 10);
    default: return 0;
    }
}

double nx_db_f64(const nx_db_result *r, size_t row, size_t col)
{
    const nx_db_value *v = nx_db_value_at(r, row, col);
    switch (v->type) {
    case NX_DB_INT: return (double)v->v.i;
    case NX_DB_FLOAT: return v->v.f;
    case NX_DB_BOOL: return v->v.b;
    case NX_DB_TEXT: return strtod(v->v.s.ptr, NULL);
    default: return 0;
    }
}

bool nx_db_bool(const nx_db_result *r, size_t row, size_t col)
{
    const nx_db_value *v = nx_db_value_at(r, row, col);
    switch (v->type) {
    case NX_DB_BOOL: return v->v.b;
    case NX_DB_INT: return v->v.i != 0;
    case NX_DB_FLOAT: return v->v.f != 0;
    case NX_DB_TEXT: return v->v.s.len && strchr("tTyY1", v->v.s.ptr[0]);
    default: return false;
    }
}

const char *nx_db_text(const nx_db_result *r, size_t row, size_t col)
{
    const nx_db_value *v = nx_db_value_at(r, row, col);
    switch (v->type) {
    case NX_DB_TEXT:
    case NX_DB_BLOB: return v->v.s.ptr;
    case NX_DB_INT: return nx_arena_printf(r->arena, "%lld", (long long)v->v.i);
    case NX_DB_FLOAT: return nx_arena_printf(r->arena, "%.17g", v->v.f);
    case NX_DB_BOOL: return v->v.b ? "true" : "false";
    default: return NULL;
    }
}

nx_str nx_db_blob(const nx_db_result *r, size_t row, size_t col)
{
    const nx_db_value *v = nx_db_value_at(r, row, col);
    if (v->type == NX_DB_TEXT || v->type == NX_DB_BLOB)
        return (nx_str){v->v.s.ptr, v->v.s.len};
    return (nx_str){NULL, 0};
}

static json_t *base64(const char *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t out = 4 * ((n + 2) / 3);
    char *s = nx_xmalloc(out + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)(unsigned char)p[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)p[i + 2];
        s[o++] = tab[(v >> 18) & 63];
        s[o++] = tab[(v >> 12) & 63];
        s[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        s[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    json_t *j = json_stringn(s, o);
    free(s);
    return j;
}

static json_t *value_json(const nx_db_value *v)
{
    switch (v->type) {
    case NX_DB_INT: return json_integer(v->v.i);
    case NX_DB_FLOAT:
        /* JSON has no NaN or infinities: they travel as the text PostgreSQL writes. */
        if (isnan(v->v.f))
            return json_string("NaN");
        if (isinf(v->v.f))
            return json_string(v->v.f > 0 ? "Infinity" : "-Infinity");
        return json_real(v->v.f);
    case NX_DB_BOOL: return json_boolean(v->v.b);
    case NX_DB_TEXT: {
        json_t *j = json_stringn(v->v.s.ptr, v->v.s.len);
        return j ? j : base64(v->v.s.ptr, v->v.s.len); /* not UTF-8 */
    }
    case NX_DB_BLOB: return base64(v->v.s.ptr, v->v.s.len);
    default: return json_null();
    }
}

void *nx_db_row_json(const nx_db_result *r, size_t row)
{
    if (!r || row >= r->nrows)
        return NULL;
    json_t *o = json_object();
    for (size_t c = 0; c < r->ncols; c++)
        json_object_set_new(o, r->names[c] ? r->names[c] : "?",
                            value_json(nx_db_value_at(r, row, c)));
    return o;
}

void *nx_db_rows_json(const nx_db_result *r)
{
    json_t *a = json_array();
    for (size_t i = 0; r && i < r->nrows; i++)
        json_array_append_new(a, nx_db_row_json(r, i));
    return a;
}

/* ---- the statement cache ---------------------------------------------------------- */

static uint64_t hash_sql(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

nx_db_cached *nx_db_cache_find(nx_db_conn *c, const char *sql)
{
    if (!c->cache)
        return NULL;
    uint64_t h = hash_sql(sql);
    for (nx_db_cached *e = c->cache[h % CACHE_BUCKETS]; e; e = e->next)
        if (e->hash == h && strcmp(e->sql, sql) == 0)
            return e;
    return NULL;
}

nx_db_cached *nx_db_cache_add(nx_db_conn *c, const char *sql)
{
    static unsigned next_id;
    if (c->ncached >= NX_DB_CACHE_MAX)
        nx_db_cache_clear(c);
    if (!c->cache)
        c->cache = nx_xcalloc(CACHE_BUCKETS, sizeof(*c->cache));
    nx_db_cached *e = nx_xcalloc(1, sizeof(*e));
    e->hash = hash_sql(sql);
    e->sql = nx_xstrdup(sql);
    e->id = ++next_id;
    nx_db_cached **b = &c->cache[e->hash % CACHE_BUCKETS];
    e->next = *b;
    *b = e;
    c->ncached++;
    return e;
}

static void cache_free(nx_db_conn *c, nx_db_cached *e)
{
    if (e->handle && c->drv->uncache)
        c->drv->uncache(c, e);
    free(e->sql);
    free(e);
}

void nx_db_cache_remove(nx_db_conn *c, nx_db_cached *e)
{
    if (!c->cache)
        return;
    for (nx_db_cached **p = &c->cache[e->hash % CACHE_BUCKETS]; *p; p = &(*p)->next) {
        if (*p == e) {
            *p = e->next;
            c->ncached--;
            cache_free(c, e);
            return;
        }
    }
}

void nx_db_cache_clear(nx_db_conn *c)
{
    if (!c->cache)
        return;
    for (size_t i = 0; i < CACHE_BUCKETS; i++) {
        while (c->cache[i]) {
            nx_db_cached *e = c->cache[i];
            c->cache[i] = e->next;
            cache_free(c, e);
        }
    }
    free(c->cache);
    c->cache = NULL;
    c->ncached = 0;
}

/* ---- placeholders ----------------------------------------------------------------- */

/* A byte of an unquoted name: PostgreSQL and MySQL names may hold '$' ("a$1"). */
static bool is_name_byte(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '$' || (unsigned char)c >= 0x80;
}

/* The length of the dollar-quote opening at p ("$$" or "$tag$"), or 0 when it is none. */
static size_t dollar_tag(const char *p)
{
    size_t i = 1;
    if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' && p[i] <= 'z') || p[i] == '_' ||
          p[i] == '$'))
        return 0;
    while ((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' && p[i] <= 'z') || p[i] == '_' ||
           (p[i] >= '0' && p[i] <= '9'))
        i++;
    return p[i] == '$' ? i + 1 : 0;
}

/* The first occurrence of the n bytes at needle in s, or NULL. */
static const char *strstr_n(const char *s, const char *needle, size_t n)
{
    for (; *s; s++)
        if (strncmp(s, needle, n) == 0)
            return s;
    return NULL;
}

char *nx_db_translate(const char *sql, nx_db_ph_style style, int *order, size_t max_order,
                      size_t *norder, int *nparams, char *err, size_t errlen)
{
    size_t len = strlen(sql);
    char *out = nx_xmalloc(len + 1); /* "$N" never grows: "?N" is as long, "?" shorter */
    size_t o = 0, n = 0;
    int highest = 0;
    const char *p = sql;
    while (*p) {
        char q = *p;
        if (q == '$' && p > sql && is_name_byte(p[-1])) {
            out[o++] = *p++; /* inside a name: "a$1" is no placeholder, "a$b$" no quote */
        } else if (q == '\'' || q == '"' || q == '`') {
            /* A quoted string or name; a doubled quote stays inside. MySQL's strings and
             * PostgreSQL's E'...' strings take backslash escapes. */
            bool escapes = q == '\'' &&
                           (style == NX_DB_PH_QMARK || (p > sql && (p[-1] == 'E' || p[-1] == 'e') &&
                                                        (p - 1 == sql || !is_name_byte(p[-2]))));
            out[o++] = *p++;
            while (*p) {
                if (*p == q && p[1] == q) {
                    out[o++] = *p++;
                    out[o++] = *p++;
                    continue;
                }
                if (*p == '\\' && escapes && p[1]) {
                    out[o++] = *p++; /* a backslash escape */
                    out[o++] = *p++;
                    continue;
                }
                if (*p == q)
                    break;
                out[o++] = *p++;
            }
            if (*p)
                out[o++] = *p++;
        } else if (q == '-' && p[1] == '-') {
            while (*p && *p != '\n')
                out[o++] = *p++;
        } else if (q == '/' && p[1] == '*') {
            out[o++] = *p++;
            out[o++] = *p++;
            while (*p && !(p[0] == '*' && p[1] == '/'))
                out[o++] = *p++;
            if (*p) {
                out[o++] = *p++;
                out[o++] = *p++;
            }
        } else if (q == '$' && dollar_tag(p) > 0) {
            /* A PostgreSQL dollar-quoted string ($$...$$, $fn$...$fn$): a function body
             * may use $1 for its own parameters. */
            size_t tag = dollar_tag(p);
            const char *end = strstr_n(p + tag, p, tag);
            size_t span = end ? (size_t)(end - p) + tag : strlen(p);
            memcpy(out + o, p, span);
            o += span;
            p += span;
        } else if (q == '$' && p[1] >= '0' && p[1] <= '9') {
            const char *d = p + 1;
            long num = 0;
            while (*d >= '0' && *d <= '9' && num <= 65535)
                num = num * 10 + (*d++ - '0');
            if (num < 1 || num > 65535) {
                snprintf(err, errlen, "placeholder $%ld: parameters are numbered from $1 to $65535",
                         num);
                free(out);
                return NULL;
            }
            if (num > highest)
                highest = (int)num;
            if (style == NX_DB_PH_QNUM) {
                out[o++] = '?';
                memcpy(out + o, p + 1, (size_t)(d - p - 1));
                o += (size_t)(d - p - 1);
            } else {
                if (n >= max_order) {
                    snprintf(err, errlen, "more than %zu placeholders in one statement", max_order);
                    free(out);
                    return NULL;
                }
                order[n++] = (int)num - 1;
                out[o++] = '?';
            }
            p = d;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
    if (norder)
        *norder = n;
    if (nparams)
        *nparams = highest;
    return out;
}

/* ---- the pool --------------------------------------------------------------------- */

static void conn_close(nx_db_conn *c)
{
    P.nopen--;
    P.drv->close(c);
}

/* Hands c (or, when NULL, a free slot to open one) to the first waiter. */
static bool hand_over(nx_db_conn *c)
{
    pool_waiter *w = P.head;
    if (!w)
        return false;
    P.head = w->next;
    if (!P.head)
        P.tail = NULL;
    w->granted = c;
    nx_wake_up(&w->wake);
    return true;
}

static void release(nx_db_conn *c)
{
    uint64_t now = nx_loop_now(P.loop);
    c->used_ms = now;
    bool expired = P.s->pool_recycle_ms && now - c->born_ms >= P.s->pool_recycle_ms;
    if (c->broken || expired || c->in_tx) {
        conn_close(c);
        hand_over(NULL);
        return;
    }
    if (hand_over(c))
        return;
    if (c->overflow && P.nidle >= P.s->pool_size) {
        conn_close(c);
        return;
    }
    c->overflow = false;
    c->next = P.idle;
    P.idle = c;
    P.nidle++;
}

static nx_db_conn *acquire(nx_db_call *call)
{
    for (;;) {
        uint64_t now = nx_loop_now(P.loop);
        while (P.idle) {
            nx_db_conn *c = P.idle;
            P.idle = c->next;
            P.nidle--;
            c->next = NULL;
            bool ok = !(P.s->pool_recycle_ms && now - c->born_ms >= P.s->pool_recycle_ms);
            if (ok && P.s->pre_ping)
                ok = c->drv->alive(c);
            if (ok && P.s->pre_ping && now - c->used_ms >= PING_IDLE_MS) {
                nx_db_error saved = *call->err;
                ok = c->drv->ping(c, call) == NX_OK;
                if (!ok && gone(call)) {
                    conn_close(c);
                    return NULL;
                }
                *call->err = saved;
            }
            if (ok)
                return c;
            conn_close(c);
        }
        int max = P.s->pool_size + P.s->max_overflow;
        if (P.nopen < max) {
            P.nopen++;
            nx_db_call cc = *call;
            uint64_t limit = now + (P.s->pool_timeout_ms ? P.s->pool_timeout_ms : 30000);
            if (!cc.deadline || limit < cc.deadline)
                cc.deadline = limit;
            nx_db_conn *c = P.drv->connect(P.s, &cc);
            if (!c) {
                P.nopen--;
                hand_over(NULL); /* a waiter may try (and fail fast) itself */
                if (call->err->kind == NX_DB_TIMEOUT)
                    call->err->kind = NX_DB_UNAVAILABLE;
                return NULL;
            }
            c->drv = P.drv;
            c->born_ms = c->used_ms = nx_loop_now(P.loop);
            c->overflow = P.nopen > P.s->pool_size;
            return c;
        }
        /* Every connection is busy: queue, for pool_timeout at most. */
        uint64_t deadline = now + P.s->pool_timeout_ms;
        if (call->deadline && call->deadline < deadline)
            deadline = call->deadline;
        pool_waiter w = {0};
        if (P.tail)
            P.tail->next = &w;
        else
            P.head = &w;
        P.tail = &w;
        int rc = nx_wait_wakeable(P.loop, &w.wake, deadline);
        if (rc == 1) {
            if (w.granted)
                return w.granted;
            continue; /* a slot freed up: open one */
        }
        /* Timed out or interrupted: leave the queue. */
        for (pool_waiter **p = &P.head, *prev = NULL; *p; prev = *p, p = &(*p)->next) {
            if (*p == &w) {
                *p = w.next;
                if (P.tail == &w)
                    P.tail = prev;
                break;
            }
        }
        if (gone(call)) {
            nx_db_fail(call, NX_DB_CANCELED, NULL, 0,
                       "gave up waiting for a connection: the client went away");
            return NULL;
        }
        nx_db_fail(call, NX_DB_UNAVAILABLE, NULL, 0,
                   "no database connection free within %llu ms (%d in use; "
                   "database.pool_size %d + max_overflow %d)",
                   (unsigned long long)(deadline - now), P.nopen, P.s->pool_size,
                   P.s->max_overflow);
        return NULL;
    }
}

static const nx_db_driver *driver_of(nx_db_kind k)
{
    switch (k) {
    case NX_DBK_POSTGRESQL: return &nx_db_pg_driver;
    case NX_DBK_MYSQL: return &nx_db_mysql_driver;
    default: return &nx_db_sqlite_driver;
    }
}

void nx_db_start(const nx_db_settings *s, nx_loop *loop)
{
    memset(&P, 0, sizeof(P));
    P.s = s;
    P.drv = driver_of(s->kind);
    P.loop = loop;
    P.started = true;
}

void nx_db_stop(void)
{
    while (P.idle) {
        nx_db_conn *c = P.idle;
        P.idle = c->next;
        P.nidle--;
        conn_close(c);
    }
    P.started = false;
}

bool nx_db_started(void)
{
    return P.started;
}

const nx_db_settings *nx_db_settings_current(void)
{
    return P.started ? P.s : NULL;
}

const char *nx_db_backend(void)
{
    return P.drv ? P.drv->name : "sqlite";
}

/* ---- sessions --------------------------------------------------------------------- */

static void make_call(nx_db_session *s, nx_db_call *call)
{
    uint64_t now = nx_loop_now(P.loop);
    memset(&s->err, 0, sizeof(s->err));
    *call = (nx_db_call){.loop = P.loop,
                         .arena = s->arena,
                         .deadline = s->deadline,
                         .gone = s->gone,
                         .err = &s->err};
    if (P.s->statement_timeout_ms) {
        /* PostgreSQL and MySQL enforce it themselves too; this bound also covers a
         * network that stops answering. */
        uint64_t st = now + P.s->statement_timeout_ms + (P.s->kind == NX_DBK_SQLITE ? 0 : 1000);
        if (!call->deadline || st < call->deadline) {
            call->deadline = st;
            call->statement_bound = true;
        }
    }
}

static bool check_started(nx_db_session *s)
{
    if (P.started && nx_coro_current())
        return true;
    memset(&s->err, 0, sizeof(s->err));
    s->err.kind = NX_DB_MISUSE;
    snprintf(s->err.message, sizeof(s->err.message), "%s",
             P.started ? "database calls must run in a request's coroutine"
                       : "the database layer is not started in this process");
    return false;
}

int nx_db_session_batch(nx_db_session *s, nx_db_stmt *stmts, size_t n)
{
    if (!check_started(s))
        return NX_ERR;
    nx_db_call call;
    make_call(s, &call);
    for (size_t i = 0; i < n; i++)
        stmts[i].result = NULL;
    nx_db_conn *c = s->pinned ? s->pinned : acquire(&call);
    if (!c)
        return NX_ERR;
    int rc = P.drv->run(c, &call, stmts, n);
    if (c != s->pinned)
        release(c);
    else if (c->broken)
        s->in_tx = false; /* the transaction died with the connection */
    return rc;
}

nx_db_result *nx_db_session_query(nx_db_session *s, const char *sql, const nx_db_value *params,
                                  size_t nparams)
{
    nx_db_stmt st = {.sql = sql, .params = params, .nparams = nparams};
    return nx_db_session_batch(s, &st, 1) == NX_OK ? st.result : NULL;
}

int nx_db_session_script(nx_db_session *s, const char *sql)
{
    if (!check_started(s))
        return NX_ERR;
    nx_db_call call;
    make_call(s, &call);
    nx_db_conn *c = s->pinned ? s->pinned : acquire(&call);
    if (!c)
        return NX_ERR;
    int rc = P.drv->script(c, &call, sql);
    if (c != s->pinned)
        release(c);
    return rc;
}

int nx_db_session_hold(nx_db_session *s)
{
    if (!check_started(s))
        return NX_ERR;
    if (s->pinned)
        return NX_OK;
    nx_db_call call;
    make_call(s, &call);
    s->pinned = acquire(&call);
    return s->pinned ? NX_OK : NX_ERR;
}

void nx_db_session_unhold(nx_db_session *s)
{
    if (s->pinned && !s->in_tx) {
        release(s->pinned);
        s->pinned = NULL;
    }
}

static int misuse(nx_db_session *s, const char *what)
{
    memset(&s->err, 0, sizeof(s->err));
    s->err.kind = NX_DB_MISUSE;
    snprintf(s->err.message, sizeof(s->err.message), "%s", what);
    return NX_ERR;
}

int nx_db_session_begin(nx_db_session *s)
{
    if (s->in_tx)
        return misuse(s, "a transaction is already open (transactions do not nest)");
    bool held = s->pinned != NULL;
    if (nx_db_session_hold(s) != NX_OK)
        return NX_ERR;
    if (nx_db_session_script(s, P.drv->begin_sql) != NX_OK) {
        if (!held)
            nx_db_session_unhold(s);
        return NX_ERR;
    }
    s->in_tx = true;
    s->held = held;
    s->pinned->in_tx = true;
    return NX_OK;
}

static int end_tx(nx_db_session *s, const char *sql)
{
    if (!s->in_tx && s->pinned && s->pinned->broken) {
        /* The connection died under the transaction, which the server rolled back. */
        nx_db_session_unhold(s);
        memset(&s->err, 0, sizeof(s->err));
        s->err.kind = NX_DB_UNAVAILABLE;
        snprintf(s->err.sqlstate, sizeof(s->err.sqlstate), "08006");
        snprintf(s->err.message, sizeof(s->err.message),
                 "the connection was lost during the transaction, which did not commit");
        return NX_ERR;
    }
    if (!s->in_tx)
        return misuse(s, "no transaction is open");
    nx_db_conn *c = s->pinned;
    int rc = nx_db_session_script(s, sql);
    /* Whether it worked or not the transaction is over; a connection whose COMMIT or
     * ROLLBACK failed is in an unknown state and is closed rather than reused. */
    c->in_tx = false;
    if (rc != NX_OK)
        c->broken = true;
    s->in_tx = false;
    if (!s->held || c->broken)
        nx_db_session_unhold(s); /* a hold taken before the transaction outlives it */
    return rc;
}

int nx_db_session_commit(nx_db_session *s)
{
    return end_tx(s, "COMMIT");
}

int nx_db_session_rollback(nx_db_session *s)
{
    /* A rollback usually follows a failure the caller still has to answer: a successful
     * one keeps that error. */
    nx_db_error before = s->err;
    int rc = end_tx(s, "ROLLBACK");
    if (rc == NX_OK)
        s->err = before;
    return rc;
}

/* ---- the request API ---------------------------------------------------------------- */

static nx_db_session *req_session(nx_req *req)
{
    if (!req->db) {
        req->db = nx_arena_calloc(req->arena, 1, sizeof(*req->db));
        req->db->arena = req->arena;
        req->db->gone = &req->client_gone;
    }
    req->db->deadline = req->deadline;
    return req->db;
}

static void log_failure(nx_req *req, const char *sql)
{
    const nx_db_error *e = &req->db->err;
    if (e->kind == NX_DB_QUERY || e->kind == NX_DB_MISUSE)
        nx_log_error("request %s: database: %s%s%s (sql: %.200s)", req->id, e->message,
                     e->sqlstate[0] ? " SQLSTATE " : "", e->sqlstate, sql ? sql : "");
    else if (e->kind == NX_DB_UNAVAILABLE)
        nx_log_warn("request %s: database unavailable: %s", req->id, e->message);
}

nx_db_result *nx_db_query(nx_req *req, const char *sql, const nx_db_value *params, size_t nparams)
{
    nx_db_session *s = req_session(req);
    nx_db_result *r = nx_db_session_query(s, sql, params, nparams);
    if (!r)
        log_failure(req, sql);
    return r;
}

int nx_db_exec(nx_req *req, const char *sql, const nx_db_value *params, size_t nparams)
{
    return nx_db_query(req, sql, params, nparams) ? NX_OK : NX_ERR;
}

int nx_db_batch(nx_req *req, nx_db_stmt *stmts, size_t n)
{
    nx_db_session *s = req_session(req);
    int rc = nx_db_session_batch(s, stmts, n);
    if (rc != NX_OK)
        log_failure(req, n ? stmts[0].sql : NULL);
    return rc;
}

int nx_db_begin(nx_req *req)
{
    nx_db_session *s = req_session(req);
    int rc = nx_db_session_begin(s);
    if (rc != NX_OK)
        log_failure(req, "BEGIN");
    return rc;
}

int nx_db_commit(nx_req *req)
{
    nx_db_session *s = req_session(req);
    int rc = nx_db_session_commit(s);
    if (rc != NX_OK)
        log_failure(req, "COMMIT");
    return rc;
}

int nx_db_rollback(nx_req *req)
{
    nx_db_session *s = req_session(req);
    int rc = nx_db_session_rollback(s);
    if (rc != NX_OK)
        log_failure(req, "ROLLBACK");
    return rc;
}

void nx_db_request_end(nx_req *req)
{
    nx_db_session *s = req->db;
    if (!s || !s->pinned)
        return;
    if (s->in_tx) {
        nx_log_warn("request %s: transaction left open by the handler: rolled back", req->id);
        /* The request's own time may be over: the rollback gets a little of its own, and
         * does not count the client's departure (the connection must come back clean). */
        s->deadline = nx_loop_now(P.loop) + CLEANUP_MS;
        s->gone = NULL;
        nx_db_error keep = s->err;
        nx_db_session_rollback(s);
        s->err = keep;
    }
    nx_db_session_unhold(s);
}

const nx_db_error *nx_db_error_of(nx_req *req)
{
    static const nx_db_error none = {.kind = NX_DB_OK};
    return req->db ? &req->db->err : &none;
}

void nx_db_problem(nx_req *req, nx_res *res)
{
    const nx_db_error *e = nx_db_error_of(req);
    switch (e->kind) {
    case NX_DB_UNAVAILABLE:
        nx_res_header(res, "Retry-After", "1");
        nx_problem(res, 503, "the database is unavailable; retry shortly");
        break;
    case NX_DB_CONFLICT:
        nx_res_header(res, "Retry-After", "1");
        nx_problem(res, 503, "the database could not serialize this change; retry it");
        break;
    case NX_DB_TIMEOUT: nx_problem(res, 504, "the database did not answer in time"); break;
    case NX_DB_CANCELED:
        nx_problem(res, 499, "the client went away; the statement was cancelled");
        break;
    case NX_DB_CONSTRAINT:
        if (strcmp(e->sqlstate, "23505") == 0)
            nx_problem(res, 409, "a record with this value already exists");
        else if (strcmp(e->sqlstate, "23503") == 0)
            nx_problem(res, 422,
                       "the change refers to a record that does not exist, or one "
                       "that others still refer to");
        else
            nx_problem(res, 422, "the change breaks a rule of the data (SQLSTATE %s)",
                       e->sqlstate[0] ? e->sqlstate : "23000");
        break;
    default:
        nx_problem(res, 500, "a database statement failed (see the server log for request %s)",
                   req->id);
        break;
    }
}

/* ---- readiness and code outside workers ---------------------------------------------- */

bool nx_db_ready(const char **why)
{
    static char reason[sizeof(((nx_db_error *)0)->message)];
    if (!P.started || !nx_coro_current())
        return true; /* nothing to check in this process */
    if (!P.idle && P.nopen >= P.s->pool_size + P.s->max_overflow)
        return true; /* every connection is busy working: the database answers, and a
                      * probe queueing behind the load would take a busy instance out */
    nx_arena *a = nx_arena_new(0);
    nx_db_session s = {.arena = a, .deadline = nx_loop_now(P.loop) + 1000};
    nx_db_call call;
    make_call(&s, &call);
    nx_db_conn *c = acquire(&call);
    bool ok = c != NULL;
    if (c) {
        ok = P.drv->ping(c, &call) == NX_OK;
        if (!ok)
            c->broken = true;
        release(c);
    }
    if (!ok) {
        snprintf(reason, sizeof(reason), "%s", s.err.message);
        *why = reason;
    }
    nx_arena_free(a);
    return ok;
}

typedef struct sync_run {
    int (*fn)(void *arg);
    void *arg;
    int rc;
} sync_run;

static void sync_main(void *arg)
{
    sync_run *r = arg;
    r->rc = r->fn(r->arg);
}

static void sync_done(void *arg)
{
    nx_loop_stop(arg);
}

int nx_db_run_sync(const nx_db_settings *s, int (*fn)(void *arg), void *arg)
{
    nx_loop *loop = nx_loop_new();
    if (!loop)
        return NX_ERR;
    nx_db_start(s, loop);
    sync_run r = {.fn = fn, .arg = arg, .rc = NX_ERR};
    nx_coro *c = nx_coro_new(sync_main, &r);
    nx_coro_on_exit(c, sync_done, loop);
    nx_coro_resume(c);
    if (!nx_coro_is_done(c))
        nx_loop_run(loop);
    nx_coro_free(c);
    nx_db_stop();
    nx_loop_free(loop);
    return r.rc;
}
