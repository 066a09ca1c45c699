/*
 * redis.c - the Redis cache backend: a per-worker pool of connections on the event loop.
 *
 * hiredis makes the connection (redisConnectNonBlock: the socket is non-blocking from the
 * start) and parses replies (its reader); the protocol is written and the socket read here,
 * parking the request's coroutine on the socket (nx_watch) whenever it would block, until
 * the call's deadline. So a cache call costs the worker nothing while Redis works, and no
 * hiredis call ever waits. hiredis 0.14 has no timeouts of its own: every limit here is a
 * deadline of the loop.
 *
 * Connections are made on first use, up to cache.redis.max_connections per worker; a caller
 * finding all of them busy queues until its deadline, and a returned connection goes straight
 * to the first in the queue. A new connection proves itself before use (AUTH and SELECT, or
 * PING), so a wrong password or a server that accepts connections but never answers counts
 * as a failure to connect. A connection whose call timed out or failed mid-reply is closed,
 * never reused: what is left on the wire would be read as the next call's answer.
 *
 * When a connection cannot be made, Redis is "down": for a back-off (250 ms, doubling up to
 * 2 s) every call fails at once instead of waiting on a dead server; then one call (or a
 * readiness check) tries again, the others still failing fast while it does. The first
 * connection that works ends the outage, so service comes back by itself.
 *
 * Publish and subscribe between instances: PUBLISH is a command like the others; receiving
 * takes one more connection per worker, outside the pool, driven by the loop itself (see
 * "the subscriber").
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include <nexus/log.h>

#include "cache/cache_impl.h"
#include "core/coro.h"
#include "core/resolve.h"
#include "core/util.h"
#include "core/wait.h"

#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 2000
/* The time a readiness check gives a connection to be made, when it has to make one. */
#define READY_PROBE_MS 1000
/* Keys asked of each SCAN step (a hint to the server, not a limit). */
#define SCAN_COUNT "500"
/* A ttl beyond this (over 35,000 years) is kept without expiry: Redis refuses huge ones. */
#define TTL_MAX_MS (1ull << 50)
/* Bytes read from the socket at once. */
#define READ_CHUNK 65536

/*
 * INCRBY, with the expiry set only when the key is created by this call: a counter's window
 * starts with its first increment and later ones do not extend it. One script, so that no
 * other client sees the key between the two, and an error (not an integer) changes nothing.
 */
static const char INCR_SCRIPT[] = "local created = redis.call('EXISTS', KEYS[1]) == 0\n"
                                  "local v = redis.call('INCRBY', KEYS[1], ARGV[1])\n"
                                  "if created then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end\n"
                                  "return v\n";

typedef struct rconn {
    struct rconn *next; /* in the idle list */
    redisContext *ctx;  /* its fd and reader; its own I/O functions are not used */
    nx_watch watch;
    bool broken; /* closed instead of returned */
} rconn;

typedef struct pool_waiter {
    struct pool_waiter *next;
    nx_wake wake;
    rconn *granted; /* a connection handed over, or NULL: try again */
} pool_waiter;

static struct {
    bool started;
    nx_loop *loop;
    char *host; /* copies: the settings may change with a reload */
    char *password;
    int port;
    int db;
    int max_connections;
    uint64_t connect_timeout_ms;
    char where[300]; /* "host:port" or the socket path, for messages */
    /* host's address, resolved off the loop (core/resolve.h); "" until then, and again
     * after a failed connection, so that a server that moved is found. */
    char addr[NX_ADDR_LEN];

    rconn *idle; /* most recently used first */
    int nopen;   /* open or being opened */
    pool_waiter *head, *tail;

    bool down;    /* the last attempt to connect failed */
    bool probing; /* an attempt after the back-off is under way */
    uint64_t backoff_ms;
    uint64_t retry_at; /* while down: calls before this fail at once */
    char why[160];     /* why it is down */
} R;

/* What to connect to: the socket path, the numeric host, its resolved address, or NULL
 * when the name still has to be resolved. */
static const char *connect_to(void)
{
    if (R.host[0] == '/' || nx_host_is_numeric(R.host))
        return R.host;
    return R.addr[0] ? R.addr : NULL;
}

static redisContext *connect_ctx(const char *to)
{
    redisContext *ctx =
        to[0] == '/' ? redisConnectUnixNonBlock(to) : redisConnectNonBlock(to, R.port);
    if (!ctx)
        nx_oom();
    return ctx;
}

/* ---- errors ---------------------------------------------------------------------------- */

static int fail(nx_cache_call *call, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(nx_cache_call *call, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->error, sizeof(call->error), fmt, ap);
    va_end(ap);
    return NX_ERR;
}

static bool gone(const nx_cache_call *call)
{
    return call->gone && *call->gone;
}

/* An error reply (or one of a type the command does not answer) as the call's failure. */
static int bad_reply(nx_cache_call *call, const redisReply *r, const char *what)
{
    if (r->type == REDIS_REPLY_ERROR)
        return fail(call, "Redis %s: %.*s", what, (int)(r->len > 120 ? 120 : r->len), r->str);
    return fail(call, "Redis %s: unexpected reply (type %d)", what, r->type);
}

/* ---- commands, written in the protocol's own form ------------------------------------- */

typedef struct cmdbuf {
    char *p; /* malloc'd */
    size_t len, cap;
    int n; /* commands in it: the replies to read */
} cmdbuf;

static void put(cmdbuf *b, const void *s, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        b->p = nx_xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void put_count(cmdbuf *b, char type, size_t n)
{
    char head[32];
    int k = snprintf(head, sizeof(head), "%c%zu\r\n", type, n);
    put(b, head, (size_t)k);
}

static nx_str lit(const char *s)
{
    return (nx_str){s, strlen(s)};
}

/* Appends one command of argc arguments (binary-safe: each has its length). */
static void cmd(cmdbuf *b, size_t argc, const nx_str *argv)
{
    put_count(b, '*', argc);
    for (size_t i = 0; i < argc; i++) {
        put_count(b, '$', argv[i].len);
        put(b, argv[i].ptr, argv[i].len);
        put(b, "\r\n", 2);
    }
    b->n++;
}

static void free_replies(redisReply **rep, int n)
{
    for (int i = 0; i < n; i++) {
        if (rep[i])
            freeReplyObject(rep[i]);
        rep[i] = NULL;
    }
}

/* ---- the socket ------------------------------------------------------------------------ */

/* A failure of the connection itself: it is closed when it goes back. */
static int conn_fail(rconn *c, nx_cache_call *call, const char *what, int err)
{
    c->broken = true;
    return fail(call, "%s Redis at %s: %s", what, R.where, strerror(err));
}

/*
 * Parks until c's socket has one of events or deadline (0 = none) passes. Returns the events,
 * or fails the call (the connection broken: a reply may be under way) and returns NX_ERR.
 */
static int wait_sock(rconn *c, nx_cache_call *call, uint32_t events, uint64_t deadline)
{
    int ev = 0;
    if (!gone(call) && !(deadline && nx_loop_now(R.loop) >= deadline))
        ev = nx_watch_wait(&c->watch, events, deadline);
    if (ev > 0 && !gone(call))
        return ev;
    c->broken = true;
    if (ev == NX_ERR)
        return fail(call, "Redis at %s: epoll refused the socket: %s", R.where, strerror(errno));
    if (gone(call))
        return fail(call, "Redis call abandoned: the client went away");
    return fail(call, "Redis at %s did not answer in time", R.where);
}

/* Reads what the socket holds into the reader: NX_OK with *got bytes (0: none yet), NX_ERR. */
static int read_some(rconn *c, nx_cache_call *call, size_t *got)
{
    static char buf[READ_CHUNK]; /* one worker thread; no wait between read and feed */
    *got = 0;
    for (;;) {
        ssize_t n = read(c->ctx->fd, buf, sizeof(buf));
        if (n > 0) {
            if (redisReaderFeed(c->ctx->reader, buf, (size_t)n) != REDIS_OK) {
                c->broken = true;
                return fail(call, "Redis at %s: reader: %s", R.where, c->ctx->reader->errstr);
            }
            *got = (size_t)n;
            return NX_OK;
        }
        if (n == 0) {
            c->broken = true;
            return fail(call, "Redis at %s closed the connection", R.where);
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return NX_OK;
        return conn_fail(c, call, "reading from", errno);
    }
}

/* Writes b whole, reading whatever answers arrive meanwhile (pipelined replies). */
static int send_all(rconn *c, nx_cache_call *call, const cmdbuf *b, uint64_t deadline)
{
    size_t off = 0;
    while (off < b->len) {
        ssize_t w = send(c->ctx->fd, b->p + off, b->len - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return conn_fail(c, call, "sending to", errno);
        /* Input must be watched too: Redis may answer the first commands before it has
         * read the last, and a full socket buffer on both sides would wait forever. */
        int ev = wait_sock(c, call, EPOLLIN | EPOLLOUT, deadline);
        if (ev < 0)
            return NX_ERR;
        size_t got;
        if ((ev & EPOLLIN) && read_some(c, call, &got) != NX_OK)
            return NX_ERR;
    }
    return NX_OK;
}

/*
 * Sends b's commands on c and reads their b->n replies into rep (NULL-filled first; the
 * caller frees them whatever happens). Any failure but an error reply breaks c.
 */
static int roundtrip(rconn *c, nx_cache_call *call, const cmdbuf *b, redisReply **rep,
                     uint64_t deadline)
{
    for (int i = 0; i < b->n; i++)
        rep[i] = NULL;
    if (send_all(c, call, b, deadline) != NX_OK)
        return NX_ERR;
    for (int i = 0; i < b->n;) {
        void *r = NULL;
        if (redisReaderGetReply(c->ctx->reader, &r) != REDIS_OK) {
            c->broken = true;
            return fail(call, "Redis at %s: protocol error: %s", R.where, c->ctx->reader->errstr);
        }
        if (r) {
            rep[i++] = r;
            continue;
        }
        size_t got;
        if (read_some(c, call, &got) != NX_OK)
            return NX_ERR;
        if (!got && wait_sock(c, call, EPOLLIN, deadline) < 0)
            return NX_ERR;
    }
    return NX_OK;
}

/* ---- connections ----------------------------------------------------------------------- */

static void conn_free(rconn *c)
{
    nx_watch_close(&c->watch);
    redisFree(c->ctx); /* closes the socket */
    free(c);
}

/* No round trip: the server has not closed the idle connection, nor sent it anything. */
static bool conn_alive(rconn *c)
{
    char b;
    ssize_t r = recv(c->ctx->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static void mark_up(void)
{
    if (R.down)
        nx_log_info("cache: Redis at %s answers again", R.where);
    R.down = false;
    R.backoff_ms = 0;
}

static void wake_all(void);

static void mark_down(const char *why)
{
    if (!R.down)
        nx_log_warn("cache: Redis at %s unavailable: %s; cache calls miss until it is back",
                    R.where, why);
    R.down = true;
    R.backoff_ms = R.backoff_ms ? R.backoff_ms * 2 : BACKOFF_MIN_MS;
    if (R.backoff_ms > BACKOFF_MAX_MS)
        R.backoff_ms = BACKOFF_MAX_MS;
    R.retry_at = nx_loop_now(R.loop) + R.backoff_ms;
    snprintf(R.why, sizeof(R.why), "%s", why);
    wake_all(); /* those queued for a connection fail now too */
}

/* AUTH and SELECT (or a PING): the first round trip, proving the connection usable. */
static int handshake(rconn *c, nx_cache_call *call, uint64_t deadline)
{
    cmdbuf b = {0};
    const char *what[2];
    if (*R.password) {
        nx_str a[] = {lit("AUTH"), lit(R.password)};
        what[b.n] = "AUTH";
        cmd(&b, 2, a);
    }
    char db[16];
    snprintf(db, sizeof(db), "%d", R.db);
    if (R.db) {
        nx_str a[] = {lit("SELECT"), lit(db)};
        what[b.n] = "SELECT";
        cmd(&b, 2, a);
    }
    if (!b.n) {
        nx_str a[] = {lit("PING")};
        what[b.n] = "PING";
        cmd(&b, 1, a);
    }
    redisReply *rep[2];
    int n = b.n;
    int rc = roundtrip(c, call, &b, rep, deadline);
    free(b.p);
    for (int i = 0; rc == NX_OK && i < n; i++) {
        if (rep[i]->type == REDIS_REPLY_ERROR) {
            rc = fail(call, "Redis at %s refused %s: %.*s", R.where, what[i],
                      (int)(rep[i]->len > 100 ? 100 : rep[i]->len), rep[i]->str);
            if (strncmp(rep[i]->str, "NOAUTH", 6) == 0)
                snprintf(call->error + strlen(call->error),
                         sizeof(call->error) - strlen(call->error), " (set cache.redis.password)");
        }
    }
    free_replies(rep, n);
    return rc;
}

/*
 * Opens a connection within the connect timeout (or the call's deadline, when sooner).
 * A failure that is Redis's (refused, timed out on its own limit, rejected the password)
 * puts the backend down; one that is the call's (its client left, its time ran out) does not.
 */
static rconn *conn_open(nx_cache_call *call)
{
    uint64_t now = nx_loop_now(R.loop);
    uint64_t deadline = R.connect_timeout_ms ? now + R.connect_timeout_ms : 0;
    bool call_bound = call->deadline && (!deadline || call->deadline < deadline);
    if (call_bound)
        deadline = call->deadline;

    const char *to = connect_to();
    if (!to) {
        /* redisConnectNonBlock would resolve the name itself, blocking the worker. */
        nx_addrs a;
        char why[300];
        int rc = nx_resolve(R.loop, R.host, &a, deadline, why, sizeof(why));
        if (rc != NX_OK) {
            fail(call, "Redis at %s: %s", R.where, why);
            if (gone(call) || (rc == NX_RESOLVE_LATE && call_bound))
                return NULL; /* the call's end, not necessarily Redis's */
            mark_down(call->error);
            return NULL;
        }
        snprintf(R.addr, sizeof(R.addr), "%s", a.addr[0]);
        to = R.addr;
    }
    redisContext *ctx = connect_ctx(to);
    if (ctx->err) {
        fail(call, "connecting to Redis at %s: %s", R.where, ctx->errstr);
        redisFree(ctx);
        R.addr[0] = '\0';
        mark_down(call->error);
        return NULL;
    }
    rconn *c = nx_xcalloc(1, sizeof(*c));
    c->ctx = ctx;
    if (nx_watch_open(R.loop, &c->watch, ctx->fd) != NX_OK) {
        fail(call, "Redis at %s: epoll refused the socket: %s", R.where, strerror(errno));
        conn_free(c);
        return NULL;
    }
    int rc = NX_OK;
    if (wait_sock(c, call, EPOLLOUT, deadline) < 0) {
        rc = NX_ERR;
    } else {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(ctx->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err)
            rc = fail(call, "connecting to Redis at %s: %s", R.where, strerror(err));
        else
            rc = handshake(c, call, deadline);
    }
    if (rc != NX_OK) {
        conn_free(c);
        R.addr[0] = '\0';
        if (gone(call))
            return NULL;
        if (deadline && nx_loop_now(R.loop) >= deadline) {
            fail(call, "connecting to Redis at %s: no answer within %llu ms (%s)", R.where,
                 (unsigned long long)(deadline - now),
                 call_bound ? "the call's deadline" : "cache.redis.connect_timeout");
            if (call_bound)
                return NULL; /* the call's time ran out, not necessarily Redis's */
        }
        mark_down(call->error);
        return NULL;
    }
    mark_up();
    return c;
}

/* ---- the pool -------------------------------------------------------------------------- */

static void conn_close(rconn *c)
{
    R.nopen--;
    conn_free(c);
}

/* Hands c (or, when NULL, a free slot to open one) to the first waiter. */
static bool hand_over(rconn *c)
{
    pool_waiter *w = R.head;
    if (!w)
        return false;
    R.head = w->next;
    if (!R.head)
        R.tail = NULL;
    w->granted = c;
    nx_wake_up(&w->wake);
    return true;
}

static void wake_all(void)
{
    while (hand_over(NULL)) {
    }
}

static void release(rconn *c)
{
    if (c->broken || !R.started) {
        conn_close(c);
        hand_over(NULL);
        return;
    }
    if (hand_over(c))
        return;
    c->next = R.idle;
    R.idle = c;
}

static void leave_queue(pool_waiter *w)
{
    for (pool_waiter **p = &R.head, *prev = NULL; *p; prev = *p, p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            if (R.tail == w)
                R.tail = prev;
            return;
        }
    }
}

static rconn *acquire(nx_cache_call *call)
{
    for (;;) {
        if (!R.started) {
            fail(call, "the Redis cache is not started in this process");
            return NULL;
        }
        while (R.idle) {
            rconn *c = R.idle;
            R.idle = c->next;
            c->next = NULL;
            if (conn_alive(c))
                return c;
            conn_close(c); /* Redis restarted, or closed it for idling */
        }
        uint64_t now = nx_loop_now(R.loop);
        if (R.down && (now < R.retry_at || R.probing)) {
            fail(call, "%s (next try in %llu ms)", R.why,
                 (unsigned long long)(R.retry_at > now ? R.retry_at - now : 0));
            return NULL;
        }
        if (R.nopen < R.max_connections) {
            R.nopen++;
            bool probe = R.down;
            R.probing = probe;
            rconn *c = conn_open(call);
            if (probe)
                R.probing = false;
            if (!c) {
                R.nopen--;
                hand_over(NULL); /* a waiter may try (and fail fast) itself */
                return NULL;
            }
            return c;
        }
        /* Every connection is busy: queue, until the call's deadline. */
        pool_waiter w = {0};
        if (R.tail)
            R.tail->next = &w;
        else
            R.head = &w;
        R.tail = &w;
        if (nx_wait_wakeable(R.loop, &w.wake, call->deadline) == 1) {
            if (w.granted)
                return w.granted;
            continue; /* a slot freed up, or Redis went down: look again */
        }
        leave_queue(&w);
        if (gone(call))
            fail(call, "gave up waiting for a Redis connection: the client went away");
        else
            fail(call,
                 "no Redis connection free in time (all %d of cache.redis.max_connections "
                 "busy)",
                 R.max_connections);
        return NULL;
    }
}

/* Runs b's commands on a pooled connection; rep gets b->n replies, the caller's to free. */
static int run(nx_cache_call *call, cmdbuf *b, redisReply **rep)
{
    for (int i = 0; i < b->n; i++)
        rep[i] = NULL;
    int rc = NX_ERR;
    rconn *c = acquire(call);
    if (c) {
        rc = roundtrip(c, call, b, rep, call->deadline);
        release(c);
    }
    free(b->p);
    b->p = NULL;
    if (rc != NX_OK)
        free_replies(rep, b->n);
    return rc;
}

/* ---- operations ------------------------------------------------------------------------ */

static int redis_get(nx_cache_call *call, const char *key, size_t klen, nx_str *out)
{
    cmdbuf b = {0};
    nx_str argv[] = {lit("GET"), {key, klen}};
    cmd(&b, 2, argv);
    redisReply *r;
    if (run(call, &b, &r) != NX_OK)
        return NX_ERR;
    int rc;
    if (r->type == REDIS_REPLY_STRING) {
        out->ptr = nx_arena_strndup(call->arena, r->str, r->len);
        out->len = r->len;
        rc = NX_OK;
    } else if (r->type == REDIS_REPLY_NIL) {
        rc = NX_CACHE_MISS;
    } else {
        rc = bad_reply(call, r, "GET");
    }
    freeReplyObject(r);
    return rc;
}

/* MGET: every key in one round trip. */
static int redis_get_many(nx_cache_call *call, const nx_str *keys, size_t n, nx_str *out)
{
    cmdbuf b = {0};
    nx_str *argv = nx_arena_alloc(call->arena, (n + 1) * sizeof(*argv));
    argv[0] = lit("MGET");
    memcpy(argv + 1, keys, n * sizeof(*keys));
    cmd(&b, n + 1, argv);
    redisReply *r;
    if (run(call, &b, &r) != NX_OK)
        return NX_ERR;
    int rc = NX_OK;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != n) {
        rc = bad_reply(call, r, "MGET");
    } else {
        for (size_t i = 0; i < n; i++) {
            redisReply *e = r->element[i];
            out[i].ptr = NULL;
            out[i].len = 0;
            if (e->type == REDIS_REPLY_STRING) {
                out[i].ptr = nx_arena_strndup(call->arena, e->str, e->len);
                out[i].len = e->len;
            }
        }
    }
    freeReplyObject(r);
    return rc;
}

static int redis_set(nx_cache_call *call, const char *key, size_t klen, const void *val,
                     size_t vlen, uint64_t ttl_ms)
{
    cmdbuf b = {0};
    char ms[24];
    snprintf(ms, sizeof(ms), "%llu", (unsigned long long)(ttl_ms ? ttl_ms : 1));
    nx_str argv[] = {lit("SET"), {key, klen}, {val, vlen}, lit("PX"), lit(ms)};
    cmd(&b, ttl_ms == NX_CACHE_FOREVER || ttl_ms > TTL_MAX_MS ? 3 : 5, argv);
    redisReply *r;
    if (run(call, &b, &r) != NX_OK)
        return NX_ERR;
    int rc = r->type == REDIS_REPLY_STATUS ? NX_OK : bad_reply(call, r, "SET");
    freeReplyObject(r);
    return rc;
}

/* A command of one key answering an integer: NX_OK with *n, or NX_ERR. */
static int int_command(nx_cache_call *call, const char *name, const char *key, size_t klen,
                       long long *n)
{
    cmdbuf b = {0};
    nx_str argv[] = {lit(name), {key, klen}};
    cmd(&b, 2, argv);
    redisReply *r;
    if (run(call, &b, &r) != NX_OK)
        return NX_ERR;
    int rc = NX_OK;
    if (r->type == REDIS_REPLY_INTEGER)
        *n = r->integer;
    else
        rc = bad_reply(call, r, name);
    freeReplyObject(r);
    return rc;
}

static int redis_del(nx_cache_call *call, const char *key, size_t klen)
{
    long long n;
    return int_command(call, "UNLINK", key, klen, &n);
}

static int redis_exists(nx_cache_call *call, const char *key, size_t klen)
{
    long long n;
    if (int_command(call, "EXISTS", key, klen, &n) != NX_OK)
        return NX_ERR;
    return n > 0 ? NX_OK : NX_CACHE_MISS;
}

static int redis_incr(nx_cache_call *call, const char *key, size_t klen, int64_t delta,
                      uint64_t ttl_ms, int64_t *out)
{
    cmdbuf b = {0};
    char d[24], ms[24];
    snprintf(d, sizeof(d), "%lld", (long long)delta);
    snprintf(ms, sizeof(ms), "%llu", (unsigned long long)(ttl_ms ? ttl_ms : 1));
    if (ttl_ms == NX_CACHE_FOREVER || ttl_ms > TTL_MAX_MS) {
        nx_str argv[] = {lit("INCRBY"), {key, klen}, lit(d)};
        cmd(&b, 3, argv);
    } else {
        nx_str argv[] = {lit("EVAL"), {INCR_SCRIPT, sizeof(INCR_SCRIPT) - 1},
                         lit("1"),    {key, klen},
                         lit(d),      lit(ms)};
        cmd(&b, 6, argv);
    }
    redisReply *r;
    if (run(call, &b, &r) != NX_OK)
        return NX_ERR;
    int rc = NX_OK;
    if (r->type == REDIS_REPLY_INTEGER)
        *out = r->integer;
    else
        rc = bad_reply(call, r, "INCRBY");
    freeReplyObject(r);
    return rc;
}

/* prefix with the glob characters of SCAN MATCH escaped, then "*", in the call's arena. */
static nx_str match_pattern(nx_arena *a, const char *prefix, size_t plen)
{
    char *p = nx_arena_alloc(a, plen * 2 + 2);
    size_t o = 0;
    for (size_t i = 0; i < plen; i++) {
        if (prefix[i] && strchr("*?[]\\", prefix[i]))
            p[o++] = '\\';
        p[o++] = prefix[i];
    }
    p[o++] = '*';
    p[o] = '\0';
    return (nx_str){p, o};
}

/* Appends UNLINK of the keys of a SCAN reply's key array. */
static void cmd_unlink(cmdbuf *b, const redisReply *keys)
{
    put_count(b, '*', keys->elements + 1);
    put_count(b, '$', 6);
    put(b, "UNLINK\r\n", 8);
    for (size_t i = 0; i < keys->elements; i++) {
        const redisReply *k = keys->element[i];
        put_count(b, '$', k->len);
        put(b, k->str, k->len);
        put(b, "\r\n", 2);
    }
    b->n++;
}

static bool scan_reply_ok(const redisReply *r)
{
    return r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
           r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_ARRAY;
}

/*
 * SCAN with MATCH over the whole keyspace, each step's keys unlinked in the same write as
 * the next step's SCAN: one round trip per step. The whole walk shares the call's deadline.
 */
static int redis_del_prefix(nx_cache_call *call, const char *prefix, size_t plen)
{
    nx_str pattern = match_pattern(call->arena, prefix, plen);
    rconn *c = acquire(call);
    if (!c)
        return NX_ERR;
    int rc = NX_OK;
    redisReply *pending = NULL; /* the last SCAN reply: its keys are to unlink */
    char cursor[32] = "0";
    bool more = true;
    while (rc == NX_OK && (more || pending)) {
        cmdbuf b = {0};
        bool unlinking = pending && pending->element[1]->elements > 0;
        if (unlinking)
            cmd_unlink(&b, pending->element[1]);
        if (more) {
            nx_str argv[] = {lit("SCAN"), lit(cursor),  lit("MATCH"),
                             pattern,     lit("COUNT"), lit(SCAN_COUNT)};
            cmd(&b, 6, argv);
        }
        if (pending)
            freeReplyObject(pending);
        pending = NULL;
        if (!b.n)
            break;
        redisReply *rep[2];
        int n = b.n;
        rc = roundtrip(c, call, &b, rep, call->deadline);
        free(b.p);
        if (rc == NX_OK && unlinking && rep[0]->type != REDIS_REPLY_INTEGER)
            rc = bad_reply(call, rep[0], "UNLINK");
        if (rc == NX_OK && more) {
            redisReply *scan = rep[n - 1];
            if (!scan_reply_ok(scan)) {
                rc = bad_reply(call, scan, "SCAN");
            } else {
                snprintf(cursor, sizeof(cursor), "%.*s", (int)scan->element[0]->len,
                         scan->element[0]->str);
                more = strcmp(cursor, "0") != 0;
                pending = scan;
                rep[n - 1] = NULL;
            }
        }
        free_replies(rep, n);
    }
    if (pending)
        freeReplyObject(pending);
    release(c);
    return rc;
}

/* PUBLISH on a pooled connection: Redis answers how many clients got it (any number is fine). */
static int redis_publish(nx_cache_call *call, const char *channel, size_t clen, const void *data,
                         size_t len)
{
    cmdbuf b = {0};
    nx_str argv[] = {lit("PUBLISH"), {channel, clen}, {data, len}};
    cmd(&b, 3, argv);
    redisReply *r;
    if (run(call, &b, &r) != NX_OK)
        return NX_ERR;
    int rc = r->type == REDIS_REPLY_INTEGER ? NX_OK : bad_reply(call, r, "PUBLISH");
    freeReplyObject(r);
    return rc;
}

/* ---- the subscriber -------------------------------------------------------------------- */

/*
 * One connection per worker, outside the pool: once it has sent SUBSCRIBE, Redis only pushes
 * messages on it and it can serve nothing else. No coroutine owns it: it is a state machine
 * driven by the loop (S.io for the socket, S.timer for the connect deadline and the back-off),
 * so deliveries run in the loop, outside any request, as subscribers expect. A lost connection
 * is closed and made again after a back-off, with the same subscriptions; what was published
 * in between is not replayed (Redis keeps nothing for absent subscribers).
 */
typedef enum sub_state {
    SUB_OFF,        /* not subscribing (no channels, or stopped) */
    SUB_WAITING,    /* no connection: the timer makes the next one */
    SUB_RESOLVING,  /* the host name is being resolved: the lookup's fd ends it */
    SUB_CONNECTING, /* connect under way: EPOLLOUT completes it */
    SUB_SENDING,    /* writing AUTH and SUBSCRIBE */
    SUB_LISTENING,  /* everything sent: reading confirmations, then messages */
} sub_state;

static struct {
    sub_state state;
    nx_loop *loop;
    nx_io io;
    nx_timer timer;
    redisContext *ctx; /* its fd and reader, while connected or connecting */
    nx_lookup *lookup; /* while resolving */
    nx_io lookup_io;
    char **channels;
    size_t n;
    nx_cache_deliver_fn deliver;
    cmdbuf out; /* AUTH and SUBSCRIBE, written from sent on */
    size_t sent;
    bool auth_pending; /* the first reply is AUTH's */
    size_t confirmed;  /* channels Redis confirmed on this connection */
    bool lost;         /* logged as lost, not yet as back */
    uint64_t backoff_ms;
} S;

static void sub_connect(void);

static void sub_close(void)
{
    if (S.lookup) {
        nx_loop_del(S.loop, &S.lookup_io);
        nx_lookup_abandon(S.lookup);
        S.lookup = NULL;
    }
    if (S.ctx) {
        nx_loop_del(S.loop, &S.io); /* before the fd goes: voids events of this batch */
        redisFree(S.ctx);           /* closes the socket */
        S.ctx = NULL;
    }
    free(S.out.p);
    S.out = (cmdbuf){0};
    S.sent = 0;
}

/* The connection failed or ended: close it, say so once, and try again after the back-off. */
static void sub_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void sub_fail(const char *fmt, ...)
{
    char why[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    sub_close();
    if (!S.lost)
        nx_log_warn("cache: pub/sub over Redis at %s lost: %s; messages published until it is "
                    "back are not received",
                    R.where, why);
    S.lost = true;
    S.backoff_ms = S.backoff_ms ? S.backoff_ms * 2 : BACKOFF_MIN_MS;
    if (S.backoff_ms > BACKOFF_MAX_MS)
        S.backoff_ms = BACKOFF_MAX_MS;
    S.state = SUB_WAITING;
    nx_timer_set(S.loop, &S.timer, nx_loop_now(S.loop) + S.backoff_ms);
}

static bool is_str(const redisReply *r, const char *s)
{
    return (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
           r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

/* One reply on the subscriber: NX_OK, or NX_ERR once the connection was failed. */
static int sub_reply(const redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR) {
        sub_fail("Redis refused %s: %.*s", S.auth_pending ? "AUTH" : "SUBSCRIBE",
                 (int)(r->len > 100 ? 100 : r->len), r->str);
        return NX_ERR;
    }
    if (S.auth_pending) {
        S.auth_pending = false;
        return NX_OK; /* +OK */
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3) {
        sub_fail("unexpected reply (type %d) on the subscription", r->type);
        return NX_ERR;
    }
    const redisReply *kind = r->element[0], *ch = r->element[1], *data = r->element[2];
    if (is_str(kind, "message") && ch->type == REDIS_REPLY_STRING &&
        data->type == REDIS_REPLY_STRING) {
        S.deliver(ch->str, ch->len, data->str, data->len);
    } else if (is_str(kind, "subscribe")) {
        if (++S.confirmed == S.n) {
            nx_timer_cancel(S.loop, &S.timer); /* the connect deadline */
            S.backoff_ms = 0;
            if (S.lost)
                nx_log_info("cache: pub/sub over Redis at %s is back (%zu channel%s)", R.where, S.n,
                            S.n == 1 ? "" : "s");
            S.lost = false;
        }
    }
    return NX_OK;
}

/* Reads what the socket holds (all of it: the fd is edge-triggered) and handles each reply. */
static void sub_read(void)
{
    static char buf[READ_CHUNK]; /* one worker thread; nothing waits between read and feed */
    for (;;) {
        ssize_t n = read(S.ctx->fd, buf, sizeof(buf));
        if (n == 0) {
            sub_fail("the server closed the connection");
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                sub_fail("reading: %s", strerror(errno));
            return;
        }
        if (redisReaderFeed(S.ctx->reader, buf, (size_t)n) != REDIS_OK) {
            sub_fail("reader: %s", S.ctx->reader->errstr);
            return;
        }
        for (;;) {
            void *r = NULL;
            if (redisReaderGetReply(S.ctx->reader, &r) != REDIS_OK) {
                sub_fail("protocol error: %s", S.ctx->reader->errstr);
                return;
            }
            if (!r)
                break;
            int rc = sub_reply(r);
            freeReplyObject(r);
            if (rc != NX_OK)
                return;
        }
    }
}

/* Writes what is left of AUTH and SUBSCRIBE: NX_OK (all sent, or more when writable), NX_ERR. */
static int sub_send(void)
{
    while (S.sent < S.out.len) {
        ssize_t w = send(S.ctx->fd, S.out.p + S.sent, S.out.len - S.sent, MSG_NOSIGNAL);
        if (w > 0) {
            S.sent += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return NX_OK;
        sub_fail("sending: %s", strerror(errno));
        return NX_ERR;
    }
    free(S.out.p);
    S.out = (cmdbuf){0};
    S.sent = 0;
    S.state = SUB_LISTENING;
    return NX_OK;
}

static void sub_on_io(nx_loop *loop, nx_io *io, uint32_t events)
{
    if (S.state == SUB_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(S.ctx->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err) {
            R.addr[0] = '\0';
            sub_fail("connecting: %s", strerror(err));
            return;
        }
        S.state = SUB_SENDING;
    }
    if (S.state == SUB_SENDING && sub_send() != NX_OK)
        return;
    sub_read(); /* replies may come before the last command is written */
}

static void sub_on_timer(nx_loop *loop, nx_timer *t)
{
    if (S.state == SUB_WAITING) {
        sub_connect();
        return;
    }
    /* Connecting, or subscribed to fewer channels than asked, past the connect timeout. */
    if (S.state != SUB_OFF)
        sub_fail("no answer within %llu ms (cache.redis.connect_timeout)",
                 (unsigned long long)R.connect_timeout_ms);
}

/* The subscriber's lookup ended: connect to the address, or fail and back off. */
static void sub_on_lookup(nx_loop *loop, nx_io *io, uint32_t events)
{
    nx_loop_del(S.loop, &S.lookup_io);
    nx_timer_cancel(S.loop, &S.timer);
    nx_lookup *l = S.lookup;
    S.lookup = NULL;
    nx_addrs a;
    char why[300];
    if (nx_lookup_finish(l, &a, why, sizeof(why)) != NX_OK) {
        sub_fail("%s", why);
        return;
    }
    snprintf(R.addr, sizeof(R.addr), "%s", a.addr[0]);
    sub_connect();
}

/* Starts resolving the host name off the loop; sub_on_lookup continues. */
static void sub_resolve(void)
{
    S.lookup = nx_lookup_start(R.host);
    if (!S.lookup) {
        sub_fail("resolving %s: no thread for the lookup", R.host);
        return;
    }
    S.lookup_io = (nx_io){.fd = nx_lookup_fd(S.lookup), .cb = sub_on_lookup};
    if (nx_loop_add(S.loop, &S.lookup_io, EPOLLIN) != NX_OK) {
        nx_lookup_abandon(S.lookup);
        S.lookup = NULL;
        sub_fail("resolving %s: epoll refused the lookup", R.host);
        return;
    }
    S.state = SUB_RESOLVING;
    if (R.connect_timeout_ms)
        nx_timer_set(S.loop, &S.timer, nx_loop_now(S.loop) + R.connect_timeout_ms);
}

/* Opens the connection and queues AUTH and SUBSCRIBE; the loop does the rest. */
static void sub_connect(void)
{
    const char *to = connect_to();
    if (!to) {
        sub_resolve();
        return;
    }
    redisContext *ctx = connect_ctx(to);
    if (ctx->err) {
        R.addr[0] = '\0';
        char why[160];
        snprintf(why, sizeof(why), "%s", ctx->errstr);
        redisFree(ctx);
        sub_fail("connecting: %s", why);
        return;
    }
    if (R.host[0] != '/')
        redisEnableKeepAlive(ctx); /* a peer gone silent is noticed, if late */
    S.ctx = ctx;
    S.confirmed = 0;
    S.auth_pending = *R.password != '\0';
    if (S.auth_pending) {
        nx_str a[] = {lit("AUTH"), lit(R.password)};
        cmd(&S.out, 2, a);
    }
    /* SUBSCRIBE ch1 ... chn, one command (its argument count is n + 1). */
    put_count(&S.out, '*', S.n + 1);
    put_count(&S.out, '$', 9);
    put(&S.out, "SUBSCRIBE\r\n", 11);
    for (size_t i = 0; i < S.n; i++) {
        size_t len = strlen(S.channels[i]);
        put_count(&S.out, '$', len);
        put(&S.out, S.channels[i], len);
        put(&S.out, "\r\n", 2);
    }
    S.io = (nx_io){.fd = ctx->fd, .cb = sub_on_io};
    if (nx_loop_add(S.loop, &S.io, EPOLLIN | EPOLLOUT | EPOLLET) != NX_OK) {
        int err = errno;
        redisFree(S.ctx); /* never registered: nothing to remove */
        S.ctx = NULL;
        sub_fail("epoll refused the socket: %s", strerror(err));
        return;
    }
    S.state = SUB_CONNECTING;
    if (R.connect_timeout_ms)
        nx_timer_set(S.loop, &S.timer, nx_loop_now(S.loop) + R.connect_timeout_ms);
}

static int redis_subscribe(nx_loop *loop, const char *const *channels, size_t n,
                           nx_cache_deliver_fn deliver)
{
    if (!R.started || S.state != SUB_OFF)
        return NX_ERR;
    if (!n)
        return NX_OK;
    S.loop = loop;
    S.deliver = deliver;
    S.channels = nx_xcalloc(n, sizeof(*S.channels));
    for (size_t i = 0; i < n; i++)
        S.channels[i] = nx_xstrdup(channels[i]);
    S.n = n;
    S.timer = (nx_timer){.cb = sub_on_timer};
    S.lost = false;
    S.backoff_ms = 0;
    sub_connect(); /* a failure is retried by the timer: the worker starts anyway */
    return NX_OK;
}

static void sub_stop(void)
{
    if (S.state == SUB_OFF)
        return;
    sub_close();
    nx_timer_cancel(S.loop, &S.timer);
    for (size_t i = 0; i < S.n; i++)
        free(S.channels[i]);
    free(S.channels);
    S.channels = NULL;
    S.n = 0;
    S.state = SUB_OFF;
}

/* ---- lifecycle and readiness ----------------------------------------------------------- */

static int redis_worker_start(const nx_cache_settings *s, nx_loop *loop)
{
    memset(&R, 0, sizeof(R));
    R.loop = loop;
    R.host = nx_xstrdup(s->redis_host && *s->redis_host ? s->redis_host : "127.0.0.1");
    R.addr[0] = '\0';
    R.password = nx_xstrdup(s->redis_password ? s->redis_password : "");
    R.port = s->redis_port;
    R.db = s->redis_db;
    R.max_connections = s->redis_max_connections > 0 ? s->redis_max_connections : 1;
    R.connect_timeout_ms = s->redis_connect_timeout_ms;
    if (R.host[0] == '/')
        snprintf(R.where, sizeof(R.where), "%s", R.host);
    else
        snprintf(R.where, sizeof(R.where), "%s:%d", R.host, R.port);
    R.started = true;
    return NX_OK;
}

static void redis_worker_stop(void)
{
    if (!R.started)
        return;
    sub_stop();
    while (R.idle) {
        rconn *c = R.idle;
        R.idle = c->next;
        conn_close(c);
    }
    R.started = false;
    wake_all(); /* they find the backend stopped */
    free(R.host);
    free(R.password);
    R.host = R.password = NULL;
    /* Connections still lent to requests are closed when they come back. */
}

/*
 * Ready while Redis answered the last connection attempt. With no connection to show for it
 * (a fresh worker, or the back-off over) and inside a coroutine, it makes one, given at most
 * READY_PROBE_MS, and keeps it in the pool; an idle connection is checked without a round
 * trip, and all of them busy means Redis is working.
 */
static bool redis_ready(const char **why)
{
    static char reason[200];
    if (!R.started)
        return true;
    uint64_t now = nx_loop_now(R.loop);
    bool can_wait = nx_coro_current() != NULL;
    if (R.down && (now < R.retry_at || R.probing || !can_wait)) {
        snprintf(reason, sizeof(reason), "%s", R.why);
        *why = reason;
        return false;
    }
    if (!can_wait || (!R.idle && R.nopen >= R.max_connections))
        return true;
    nx_cache_call call = {.loop = R.loop, .deadline = now + READY_PROBE_MS};
    rconn *c = acquire(&call);
    if (!c) {
        snprintf(reason, sizeof(reason), "%s", call.error);
        *why = reason;
        return false;
    }
    release(c);
    return true;
}

const nx_cache_backend nx_cache_redis_backend = {
    .name = "redis",
    .get = redis_get,
    .set = redis_set,
    .get_many = redis_get_many,
    .del = redis_del,
    .exists = redis_exists,
    .incr = redis_incr,
    .del_prefix = redis_del_prefix,
    .worker_start = redis_worker_start,
    .worker_stop = redis_worker_stop,
    .ready = redis_ready,
    .publish = redis_publish,
    .subscribe = redis_subscribe,
};
