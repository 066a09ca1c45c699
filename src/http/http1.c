/*
 * http1.c - HTTP/1.1 connections.
 *
 * A connection is a small state machine driven by edge-triggered epoll events:
 *
 *   HEAD  -> parse what is buffered; read more when incomplete
 *   BODY  -> collect Content-Length or chunked bytes (100 Continue sent if asked)
 *   RUN   -> the handler's coroutine is parked; nothing else happens until it ends
 *
 * After each request the response is appended to the output buffer and, if more
 * pipelined requests are buffered, the next one is parsed at once; the output is written
 * when the input runs dry, so a batch of pipelined requests costs one read and one write.
 *
 * A body larger than client_body_buffer_size is received into an unlinked temp file
 * through a small staging buffer, and the handler sees it mapped from that file: the
 * pages belong to the page cache, which the kernel can write back and drop, not to the
 * worker's heap, so a thousand slow uploads cost disk, not memory.
 *
 * Idle connections hold no buffer and no coroutine: only this struct and its timer.
 * Closed connections are unlinked at once but freed at the end of the loop iteration,
 * because epoll may still hand out their pointer later in the same batch of events.
 */
#include "http/http1.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/coro.h"
#include "core/wait.h"
#include "core/util.h"

#define OUT_HIGH_WATER (256 * 1024) /* stop parsing more requests until this is written */
#define SPOOL_STAGE (64 * 1024)     /* body bytes gathered before a write to the temp file */
#define ARENA_POOL_MAX 256
/*
 * When a worker drains, an idle keep-alive connection is closed only once it has been
 * idle this long. At the moment of the drain nearly every busy connection is "idle"
 * (between a response and the next request, which may be on the wire): closing them at
 * once fails those requests. Within the grace a request is still served, answered with
 * "Connection: close", and the client reconnects to a worker that is not draining.
 */
#define DRAIN_IDLE_MS 500

enum conn_state { ST_HEAD, ST_BODY, ST_RUN, ST_CLOSED };

typedef struct nx_conn {
    nx_io io;
    nx_timer timer;
    nx_http_ctx *ctx;
    struct nx_conn *prev, *next;
    nx_buf *in;
    nx_buf *out;
    nx_buf *head;        /* holds the head of a request whose body is still arriving */
    nx_buf *body;        /* body bytes when they did not all arrive with the head */
    struct spool *spool; /* the body's temp file, in the request's arena; NULL if none */
    nx_req *req;         /* the request being read or run */
    nx_coro *coro;       /* its coroutine while parked */
    nx_h1_chunked chunked;
    uint64_t body_left; /* Content-Length bytes still to read */
    uint64_t since;     /* when the current timeout's clock started */
    int file_fd;        /* file being sent after out drains, -1 if none */
    uint64_t file_off, file_left;
    uint8_t state;
    bool readable; /* edge seen and not yet read to EAGAIN */
    bool writable;
    bool want_close;   /* close once the output is written */
    bool keep_alive;   /* of the request being read or run */
    bool in_process;   /* guards process() against re-entry */
    bool is_chunked;   /* the body being read is chunked */
    bool head_started; /* bytes of a new head have arrived */
    bool orphan;       /* closed while its handler was parked; freed when it ends */
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } peer; /* not sockaddr_storage: idle connections should stay small */
} nx_conn;

static nx_arena *arena_pool[ARENA_POOL_MAX];
static size_t arena_pool_len;

static nx_arena *arena_get(void)
{
    return arena_pool_len ? arena_pool[--arena_pool_len] : nx_arena_new(0);
}

static void arena_put(nx_arena *a)
{
    nx_arena_reset(a);
    if (arena_pool_len < ARENA_POOL_MAX)
        arena_pool[arena_pool_len++] = a;
    else
        nx_arena_free(a);
}

void nx_http_settings_default(nx_http_settings *s)
{
    nx_h1_limits_default(&s->limits);
    s->max_body = 100ull * 1024 * 1024;
    s->body_buffer = 1024 * 1024;
    s->body_temp_dir = NULL;
    s->keepalive_ms = 5000;
    s->header_ms = 10000;
    s->body_ms = 10000;
    s->handler_ms = 30000;
    s->send_ms = 60000;
}

static void free_zombies(nx_loop *loop, void *arg)
{
    nx_http_ctx *ctx = arg;
    while (ctx->zombies) {
        nx_conn *c = ctx->zombies;
        ctx->zombies = c->next;
        free(c);
    }
}

void nx_http_ctx_init(nx_http_ctx *ctx)
{
    ctx->conns = NULL;
    ctx->zombies = NULL;
    ctx->nconns = 0;
    ctx->inflight = 0;
    ctx->draining = false;
    nx_loop_on_tick(ctx->loop, free_zombies, ctx);
}

/* ---- Date header, formatted once per second ---- */

static char date_line[64] = "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n";
static size_t date_len = 37;
static int64_t date_sec = -1;

static void refresh_date(int64_t now)
{
    if (now == date_sec)
        return;
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char mons[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)now;
    struct tm tm;
    gmtime_r(&t, &tm);
    date_len = (size_t)snprintf(date_line, sizeof(date_line),
                                "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n", days[tm.tm_wday],
                                tm.tm_mday, mons[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
                                tm.tm_min, tm.tm_sec);
    date_sec = now;
}

/* ---- connection lifecycle ---- */

static void on_io(nx_loop *loop, nx_io *io, uint32_t events);
static void on_timer(nx_loop *loop, nx_timer *t);
static void process(nx_conn *c);

void nx_http_conn_open(nx_http_ctx *ctx, int fd, const struct sockaddr *peer, socklen_t len)
{
    nx_conn *c = nx_xcalloc(1, sizeof(*c));
    c->io.fd = fd;
    c->io.cb = on_io;
    c->timer.cb = on_timer;
    c->ctx = ctx;
    c->file_fd = -1;
    c->state = ST_HEAD;
    c->writable = true; /* a new socket has room; EPOLLOUT edges report later changes */
    if (len > sizeof(c->peer))
        len = sizeof(c->peer);
    memcpy(&c->peer, peer, len);
    /* Responses are written whole; Nagle would only delay the last segment. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (nx_loop_add(ctx->loop, &c->io, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) != NX_OK) {
        nx_log_error("epoll_ctl(ADD) of a new connection failed: %s", strerror(errno));
        close(fd);
        free(c);
        return;
    }
    c->next = ctx->conns;
    if (ctx->conns)
        ctx->conns->prev = c;
    ctx->conns = c;
    ctx->nconns++;
    c->since = nx_loop_now(ctx->loop);
    nx_timer_set(ctx->loop, &c->timer, c->since + ctx->set->header_ms);
    /* Data may already be waiting (the common case for a fresh connection). */
    c->readable = true;
    process(c);
}

static void release_request(nx_conn *c)
{
    if (c->req) {
        arena_put(c->req->arena);
        c->req = NULL;
    }
    nx_buf_put(c->body);
    c->body = NULL;
    c->spool = NULL; /* closed and unmapped by the arena's cleanup */
    nx_buf_put(c->head);
    c->head = NULL;
}

static void conn_close(nx_conn *c)
{
    if (c->state == ST_CLOSED)
        return;
    nx_http_ctx *ctx = c->ctx;
    bool parked = c->state == ST_RUN;
    c->state = ST_CLOSED;
    nx_timer_cancel(ctx->loop, &c->timer);
    close(c->io.fd);
    c->file_fd = -1; /* the fd belongs to the request's arena */
    nx_buf_put(c->in);
    nx_buf_put(c->out);
    c->in = c->out = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        ctx->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    ctx->nconns--;
    if (parked) {
        /* The handler's frames live on its coroutine stack and cannot be unwound: the
         * request and this struct stay until the coroutine ends (on_coro_exit). */
        c->orphan = true;
    } else {
        release_request(c);
        c->next = ctx->zombies;
        ctx->zombies = c;
    }
    if (ctx->on_close)
        ctx->on_close(ctx->arg);
}

/* ---- output ---- */

static nx_buf *out_buf(nx_conn *c)
{
    if (!c->out)
        c->out = nx_buf_get(0);
    return c->out;
}

static inline char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

static char *put_u64(char *p, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

/*
 * Appends the response head (and, unless HEAD or a file, the body) to the output buffer.
 * Returns the number of body bytes the response carries.
 */
static uint64_t serialize(nx_conn *c, nx_req *req, bool keep_alive)
{
    nx_res *res = &req->res;
    int status = res->status;
    bool no_body = status < 200 || status == 204 || status == 304;
    bool is_file = res->file_fd >= 0;
    uint64_t blen = is_file ? res->file_size : res->body_len;
    const char *reason = nx_status_reason(status);
    size_t ctlen = res->content_type ? strlen(res->content_type) : 0;
    size_t idlen = strlen(req->id);
    refresh_date(nx_loop_wall(c->ctx->loop));

    size_t need = 160 + strlen(reason) + date_len + ctlen + idlen;
    for (nx_res_hdr *h = res->headers; h; h = h->next)
        need += strlen(h->name) + strlen(h->value) + 4;
    bool inline_body = !no_body && !req->is_head && !is_file;
    if (inline_body)
        need += res->body_len;

    nx_buf *out = out_buf(c);
    nx_buf_reserve(out, need);
    char *p = out->data + out->end;
    if (status == 200) {
        p = put(p, "HTTP/1.1 200 OK\r\n", 17);
    } else {
        p = put(p, "HTTP/1.1 ", 9);
        *p++ = (char)('0' + status / 100 % 10);
        *p++ = (char)('0' + status / 10 % 10);
        *p++ = (char)('0' + status % 10);
        *p++ = ' ';
        p = put(p, reason, strlen(reason));
        p = put(p, "\r\n", 2);
    }
    p = put(p, "Server: nexus\r\n", 15);
    p = put(p, date_line, date_len);
    if (ctlen && !no_body) {
        p = put(p, "Content-Type: ", 14);
        p = put(p, res->content_type, ctlen);
        p = put(p, "\r\n", 2);
    }
    if (!no_body) {
        p = put(p, "Content-Length: ", 16);
        p = put_u64(p, blen);
        p = put(p, "\r\n", 2);
    }
    p = put(p, "X-Request-ID: ", 14);
    p = put(p, req->id, idlen);
    p = put(p, "\r\n", 2);
    for (nx_res_hdr *h = res->headers; h; h = h->next) {
        p = put(p, h->name, strlen(h->name));
        p = put(p, ": ", 2);
        p = put(p, h->value, strlen(h->value));
        p = put(p, "\r\n", 2);
    }
    if (!keep_alive)
        p = put(p, "Connection: close\r\n", 19);
    else if (req->version == 10)
        p = put(p, "Connection: keep-alive\r\n", 24);
    p = put(p, "\r\n", 2);
    if (inline_body && res->body_len)
        p = put(p, res->body, res->body_len);
    out->end = (size_t)(p - out->data);

    if (is_file && !no_body && !req->is_head && blen) {
        /* The file follows everything queued before it. Its fd is closed with the
         * request's arena, so the request is kept until the file is sent. */
        c->file_fd = res->file_fd;
        c->file_off = 0;
        c->file_left = blen;
    }
    return no_body || req->is_head ? 0 : blen;
}

/* Writes what is queued. Returns NX_OK (all written), NX_AGAIN, or NX_ERR (close). */
static int flush(nx_conn *c)
{
    nx_buf *out = c->out;
    while (out && nx_buf_len(out)) {
        ssize_t n = write(c->io.fd, out->data + out->start, nx_buf_len(out));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                c->writable = false;
                return NX_AGAIN;
            }
            return NX_ERR;
        }
        out->start += (size_t)n;
        c->since = nx_loop_now(c->ctx->loop);
    }
    if (out) {
        nx_buf_put(out);
        c->out = NULL;
    }
    while (c->file_fd >= 0 && c->file_left) {
        off_t off = (off_t)c->file_off;
        size_t chunk = c->file_left > (1u << 20) ? (1u << 20) : (size_t)c->file_left;
        ssize_t n = sendfile(c->io.fd, c->file_fd, &off, chunk);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                c->writable = false;
                return NX_AGAIN;
            }
            return NX_ERR;
        }
        if (n == 0)
            return NX_ERR; /* the file shrank: the Content-Length sent can't be honoured */
        c->file_off += (uint64_t)n;
        c->file_left -= (uint64_t)n;
        c->since = nx_loop_now(c->ctx->loop);
    }
    if (c->file_fd >= 0) {
        c->file_fd = -1;
        if (c->state == ST_HEAD)
            release_request(c); /* the request was kept for its file */
    }
    return NX_OK;
}

static bool output_pending(const nx_conn *c)
{
    return (c->out && nx_buf_len(c->out)) || c->file_fd >= 0;
}

/* ---- requests ---- */

static void run_request(void *arg)
{
    nx_req *req = arg;
    nx_exchange_dispatch(req, req->router);
}

/*
 * Answers an error found by the connection itself (a bad head, a limit, a timeout) with
 * a problem+json response and closes after it. A request in preparation is dropped, and
 * unread input discarded: after a framing error nothing that follows can be trusted.
 */
static void fail(nx_conn *c, int status, const char *detail, nx_str path)
{
    nx_arena *a = arena_get();
    nx_req *req = nx_exchange_new(a);
    req->version = 11;
    if (path.ptr) {
        /* Copied before the request that may own those bytes is released. */
        req->path = nx_arena_strndup(a, path.ptr, path.len); /* the problem's "instance" */
        req->path_len = path.len;
    }
    release_request(c);
    req->peer = &c->peer.sa;
    nx_exchange_set_id(req, NULL);
    nx_problem(&req->res, status, "%s", detail);
    c->keep_alive = false;
    c->want_close = true;
    uint64_t bytes = serialize(c, req, false);
    if (c->ctx->on_done)
        c->ctx->on_done(c->ctx->arg, req, status, bytes);
    arena_put(a);
    c->state = ST_HEAD;
    if (c->in)
        c->in->start = c->in->end;
}

/* The path of the request being read, for error answers; NULL when there is none. */
static nx_str req_path(const nx_conn *c)
{
    if (!c->req || !c->req->path)
        return (nx_str){NULL, 0};
    return (nx_str){c->req->path, c->req->path_len};
}

static void process(nx_conn *c);

static void finish_request(nx_conn *c)
{
    nx_req *req = c->req;
    bool keep = c->keep_alive && !c->ctx->draining;
    uint64_t bytes = serialize(c, req, keep);
    if (c->ctx->on_done)
        c->ctx->on_done(c->ctx->arg, req, req->res.status, bytes);
    c->state = ST_HEAD;
    if (c->file_fd < 0)
        release_request(c);
    if (!keep)
        c->want_close = true;
    c->head_started = false;
    c->since = nx_loop_now(c->ctx->loop);
    if (!c->in_process)
        process(c);
}

static void on_coro_exit(void *arg)
{
    nx_conn *c = arg;
    nx_coro_free(c->coro);
    c->coro = NULL;
    c->ctx->inflight--;
    if (c->orphan) {
        release_request(c);
        free(c);
        return;
    }
    finish_request(c);
}

/* Builds the nx_req from a parsed head; strings are terminated in place in c->in. */
static void build_request(nx_conn *c, const nx_h1_request *h)
{
    nx_arena *a = arena_get();
    nx_req *req = nx_exchange_new(a);
    /* The byte after the method, the path, the query and each header value is a
     * delimiter (SP, '?', CR, or trimmed whitespace) that nothing reads again: the
     * strings are NUL-terminated where they lie instead of being copied. */
    char *m = (char *)h->method.ptr;
    m[h->method.len] = '\0';
    req->method = m;
    req->method_len = h->method.len;
    char *path = (char *)h->path.ptr;
    bool has_query = h->path.ptr + h->path.len < h->target.ptr + h->target.len;
    if (h->path.len) {
        path[h->path.len] = '\0';
        req->path = path;
        req->path_len = h->path.len;
    } else {
        req->path = "/"; /* absolute form without a path: "http://host" means "/" */
        req->path_len = 1;
    }
    if (has_query) {
        char *q = (char *)h->query.ptr;
        q[h->query.len] = '\0';
        req->query = q;
    }
    req->target = h->target;
    req->version = h->version;
    req->nheaders = h->nheaders;
    req->headers = nx_arena_alloc(a, h->nheaders * sizeof(nx_header) + 1);
    const char *client_id = NULL;
    for (size_t i = 0; i < h->nheaders; i++) {
        char *v = (char *)h->headers[i].value.ptr;
        v[h->headers[i].value.len] = '\0';
        req->headers[i].name = h->headers[i].name;
        req->headers[i].value = (nx_str){v, h->headers[i].value.len};
        if (h->headers[i].name.len == 12 &&
            strncasecmp(h->headers[i].name.ptr, "x-request-id", 12) == 0)
            client_id = v;
    }
    req->peer = &c->peer.sa;
    req->loop = c->ctx->loop;
    req->router = c->ctx->router;
    req->is_head = h->method.len == 4 && memcmp(h->method.ptr, "HEAD", 4) == 0;
    nx_exchange_set_id(req, client_id);
    c->req = req;
    c->keep_alive = h->keep_alive && !c->ctx->draining;
}

static void start_handler(nx_conn *c)
{
    nx_http_ctx *ctx = c->ctx;
    c->req->deadline = nx_loop_now(ctx->loop) + ctx->set->handler_ms;
    c->state = ST_RUN;
    ctx->inflight++;
    c->coro = nx_coro_new(run_request, c->req);
    nx_coro_on_exit(c->coro, on_coro_exit, c);
    nx_coro_resume(c->coro); /* returns when the handler ends or parks */
}

/* ---- input ---- */

/* Reads at most max bytes into b; returns bytes read, 0 at EOF, NX_AGAIN, or NX_ERR. */
static ssize_t read_into(nx_conn *c, nx_buf *b, size_t max)
{
    if (b->cap == b->end)
        nx_buf_reserve(b, NX_BUF_SIZE / 2);
    size_t room = b->cap - b->end;
    if (room > max)
        room = max;
    for (;;) {
        ssize_t n = read(c->io.fd, b->data + b->end, room);
        if (n > 0) {
            b->end += (size_t)n;
            /* A short read drained the socket: the next edge will tell of more. */
            if ((size_t)n < room)
                c->readable = false;
            return n;
        }
        if (n == 0) {
            c->readable = false;
            return 0;
        }
        if (errno == EINTR)
            continue;
        c->readable = false;
        return errno == EAGAIN ? NX_AGAIN : NX_ERR;
    }
}

/* ---- request bodies in temp files ---- */

typedef struct spool {
    int fd;
    uint64_t written;
    void *map; /* the whole file, once the body is complete */
    size_t map_len;
} spool;

static void spool_cleanup(void *arg)
{
    spool *s = arg;
    if (s->map)
        munmap(s->map, s->map_len);
    close(s->fd);
}

static const char *spool_dir(const nx_http_settings *set)
{
    if (set->body_temp_dir && *set->body_temp_dir)
        return set->body_temp_dir;
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

/* A file in dir that no name reaches: O_TMPFILE, else mkostemp and unlink at once. */
static int temp_file(const char *dir)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
        return fd;
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/nexus-body-XXXXXX", dir) >= (int)sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    fd = mkostemp(path, O_CLOEXEC);
    if (fd >= 0)
        unlink(path);
    return fd;
}

int nx_http_body_temp_check(const nx_http_settings *s, bool *configured, char *err, size_t errlen)
{
    const char *dir = spool_dir(s);
    *configured = s->body_temp_dir && *s->body_temp_dir;
    if (*configured && nx_mkdirs(dir, 0700) != 0) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return NX_ERR;
    }
    int fd = temp_file(dir);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create files in %s: %s", dir, strerror(errno));
        return NX_ERR;
    }
    close(fd);
    return NX_OK;
}

/* A storage failure: logged with the folder, and a 503 for the client (its body is lost). */
static void spool_failed(nx_conn *c, const char *what, int err)
{
    nx_log_error("request body: cannot %s a temp file in %s (server.client_body_temp_path): %s",
                 what, spool_dir(c->ctx->set), strerror(err));
    fail(c, 503, "the server cannot store the request body right now; retry shortly", req_path(c));
}

/* Gives the request a temp file for its body; false (answered 503) when none can be made. */
static bool spool_begin(nx_conn *c)
{
    int fd = temp_file(spool_dir(c->ctx->set));
    if (fd < 0) {
        spool_failed(c, "make", errno);
        return false;
    }
    spool *s = nx_arena_calloc(c->req->arena, 1, sizeof(*s));
    s->fd = fd;
    nx_arena_on_cleanup(c->req->arena, spool_cleanup, s);
    c->spool = s;
    return true;
}

/* Writes the staged bytes to the temp file; false (answered 503) when it cannot. */
static bool spool_flush(nx_conn *c)
{
    spool *s = c->spool;
    nx_buf *b = c->body;
    while (nx_buf_len(b)) {
        ssize_t n = write(s->fd, b->data + b->start, nx_buf_len(b));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            spool_failed(c, "write to", n < 0 ? errno : ENOSPC);
            return false;
        }
        b->start += (size_t)n;
        s->written += (uint64_t)n;
    }
    b->start = b->end = 0;
    return true;
}

/* The body is complete: the request's body is the file, mapped read-only. */
static bool spool_finish(nx_conn *c)
{
    if (!spool_flush(c))
        return false;
    spool *s = c->spool;
    void *m = mmap(NULL, (size_t)s->written, PROT_READ, MAP_PRIVATE, s->fd, 0);
    if (m == MAP_FAILED) {
        spool_failed(c, "map", errno);
        return false;
    }
    s->map = m;
    s->map_len = (size_t)s->written;
    c->req->body = (nx_str){m, s->map_len};
    return true;
}

/*
 * Moves buffered body bytes from c->in to c->body (and from there to the temp file when
 * the body is spooled). True when the body is complete and set on the request; false
 * while more is to come or when it was refused (fail() called).
 */
static bool collect_body(nx_conn *c)
{
    nx_buf *in = c->in;
    size_t avail = in ? nx_buf_len(in) : 0;
    const nx_http_settings *set = c->ctx->set;
    bool done;
    if (!c->is_chunked) {
        size_t take = avail < c->body_left ? avail : (size_t)c->body_left;
        if (take) {
            nx_buf_append(c->body, in->data + in->start, take);
            in->start += take;
            c->body_left -= take;
        }
        done = c->body_left == 0;
    } else {
        if (!avail)
            return false;
        nx_buf_reserve(c->body, avail); /* decoding never produces more than it consumes */
        size_t used = 0, produced = 0;
        nx_h1_error err;
        int rc = nx_h1_chunked_decode(&c->chunked, in->data + in->start, avail, &used,
                                      c->body->data + c->body->end, &produced, &err);
        in->start += used;
        c->body->end += produced;
        if (rc == NX_H1_ERROR) {
            fail(c, err.status, err.reason, req_path(c));
            return false;
        }
        if ((c->spool ? c->spool->written : 0) + nx_buf_len(c->body) > set->max_body) {
            fail(c, 413, "the request body is larger than the server accepts", req_path(c));
            return false;
        }
        if (!c->spool && nx_buf_len(c->body) > set->body_buffer && !spool_begin(c))
            return false;
        done = rc == NX_OK;
    }
    if (c->spool) {
        if (done)
            return spool_finish(c);
        if (nx_buf_len(c->body) >= SPOOL_STAGE)
            spool_flush(c); /* a failure has answered 503 */
        return false;
    }
    if (done)
        c->req->body = (nx_str){c->body->data + c->body->start, nx_buf_len(c->body)};
    return done;
}

/*
 * After a head: sets up reading its body. Returns true when the request can run now
 * (no body, or all of it already buffered), false when the body must be awaited (state
 * ST_BODY) or was refused (fail() called).
 */
static bool begin_body(nx_conn *c, const nx_h1_request *h)
{
    nx_buf *in = c->in;
    c->is_chunked = h->chunked;
    c->body_left = 0;
    if (!h->chunked && h->content_length <= 0)
        return true;
    if (!h->chunked && (uint64_t)h->content_length > c->ctx->set->max_body) {
        fail(c, 413, "the request body is larger than the server accepts", req_path(c));
        return false;
    }
    if (!h->chunked && nx_buf_len(in) >= (uint64_t)h->content_length) {
        /* The whole body came with the head: use it where it lies. */
        c->req->body = (nx_str){in->data + in->start, (size_t)h->content_length};
        in->start += (size_t)h->content_length;
        return true;
    }
    bool spooled = !h->chunked && (uint64_t)h->content_length > c->ctx->set->body_buffer;
    if (spooled && !spool_begin(c))
        return false;
    /* The head's strings point into c->in, which must now keep filling (and may move):
     * hand that buffer to the request and continue in a fresh one. */
    c->head = in;
    c->in = nx_buf_get(0);
    nx_buf_append(c->in, in->data + in->start, nx_buf_len(in));
    in->start = in->end;
    if (h->chunked) {
        c->body = nx_buf_get(0);
        nx_h1_chunked_init(&c->chunked);
    } else {
        c->body = nx_buf_get(spooled ? SPOOL_STAGE : (size_t)h->content_length);
        c->body_left = (uint64_t)h->content_length;
    }
    c->state = ST_BODY;
    c->since = nx_loop_now(c->ctx->loop);
    if (h->expect_continue && h->version == 11)
        nx_buf_append(out_buf(c), "HTTP/1.1 100 Continue\r\n\r\n", 25);
    return false;
}

/*
 * Parses and starts buffered requests until input, output room or state stops it.
 * Returns true when it stopped only because output must be written first.
 */
static bool handle_input(nx_conn *c)
{
    static nx_h1_request head; /* one thread per worker: parsed heads never overlap */
    nx_http_ctx *ctx = c->ctx;

    while (c->state == ST_HEAD || c->state == ST_BODY) {
        if (c->want_close)
            return false;
        if (c->file_fd >= 0 || (c->out && nx_buf_len(c->out) > OUT_HIGH_WATER))
            return true;
        if (c->state == ST_HEAD && c->in && nx_buf_len(c->in)) {
            nx_h1_error err;
            head.path = (nx_str){NULL, 0}; /* set by the parser once the target is read */
            int n = nx_h1_parse_head(c->in->data + c->in->start, nx_buf_len(c->in),
                                     &ctx->set->limits, &head, &err);
            if (n == NX_H1_ERROR) {
                fail(c, err.status, err.reason, head.path);
                return false;
            }
            if (n > 0) {
                c->in->start += (size_t)n;
                build_request(c, &head);
                if (begin_body(c, &head))
                    start_handler(c);
                continue;
            }
            if (!c->head_started) {
                c->head_started = true;
                c->since = nx_loop_now(ctx->loop);
            }
        } else if (c->state == ST_BODY && collect_body(c)) {
            start_handler(c);
            continue;
        }
        if (c->state != ST_HEAD && c->state != ST_BODY)
            return false; /* collect_body() failed the request */
        if (!c->readable || c->want_close)
            return false;

        /* Read more. Large Content-Length bodies go straight to the body buffer, and no
         * further than the body, so no byte of the next request lands there. */
        if (!c->in)
            c->in = nx_buf_get(0);
        else if (c->in->start == c->in->end)
            c->in->start = c->in->end = 0;
        nx_buf *dst = c->in;
        size_t max = SIZE_MAX;
        if (c->state == ST_BODY && !c->is_chunked && nx_buf_len(c->in) == 0) {
            dst = c->body;
            max = (size_t)c->body_left;
            nx_buf_reserve(dst, max < NX_BUF_SIZE ? max : NX_BUF_SIZE);
        } else if (c->in->end == c->in->cap && c->in->start) {
            nx_buf_reserve(c->in, c->in->start); /* slide unparsed bytes to the front */
        }
        ssize_t r = read_into(c, dst, max);
        if (r == NX_AGAIN)
            return false;
        if (r == NX_ERR) {
            conn_close(c);
            return false;
        }
        if (r == 0) {
            /* The client finished sending. Requests already answered still get their
             * responses; a partial one is abandoned. */
            c->want_close = true;
            return false;
        }
        if (dst == c->body)
            c->body_left -= (uint64_t)r;
        if (c->state == ST_BODY)
            c->since = nx_loop_now(ctx->loop);
    }
    return false;
}

static void arm_timer(nx_conn *c)
{
    nx_http_ctx *ctx = c->ctx;
    uint64_t when;
    if (output_pending(c))
        when = c->since + ctx->set->send_ms;
    else if (c->state == ST_BODY)
        when = c->since + ctx->set->body_ms;
    else if (c->state == ST_RUN)
        when = 0; /* the handler's own waits are bounded by its deadline */
    else if (c->head_started)
        when = c->since + ctx->set->header_ms;
    else if (ctx->draining && ctx->set->keepalive_ms > DRAIN_IDLE_MS)
        when = c->since + DRAIN_IDLE_MS;
    else
        when = c->since + ctx->set->keepalive_ms;
    if (when == 0)
        nx_timer_cancel(ctx->loop, &c->timer);
    else if (!nx_timer_is_armed(&c->timer) || c->timer.when != when)
        nx_timer_set(ctx->loop, &c->timer, when);
}

static void process(nx_conn *c)
{
    if (c->in_process || c->state == ST_CLOSED)
        return;
    c->in_process = true;
    for (;;) {
        bool blocked = handle_input(c);
        if (c->state == ST_CLOSED)
            break;
        if (output_pending(c) && c->writable && flush(c) == NX_ERR) {
            conn_close(c);
            break;
        }
        /* Input waited behind output over the high-water mark or a file: once that is
         * written, go round again. */
        if (!blocked || output_pending(c))
            break;
    }
    c->in_process = false;
    if (c->state == ST_CLOSED)
        return;
    if (c->in && c->state == ST_HEAD && nx_buf_len(c->in) == 0) {
        nx_buf_put(c->in); /* idle connections hold no buffer */
        c->in = NULL;
    }
    if (c->want_close && !output_pending(c) && c->state != ST_RUN) {
        conn_close(c);
        return;
    }
    arm_timer(c);
}

static void on_io(nx_loop *loop, nx_io *io, uint32_t events)
{
    nx_conn *c = nx_container_of(io, nx_conn, io);
    if (c->state == ST_CLOSED)
        return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->readable = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        c->writable = true;
    if (c->state == ST_RUN) {
        if ((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && c->req && !c->req->client_gone) {
            /* The client closed its side while the handler is parked: whatever it waits
             * for (a query, a sleep) ends now, as nginx ends such a request with 499. */
            c->req->client_gone = true;
            nx_wait_interrupt(loop, c->coro);
        }
        /* Only earlier responses can be pending; new input waits for the handler. */
        if (output_pending(c) && c->writable && flush(c) == NX_ERR) {
            nx_buf_put(c->out);
            c->out = NULL;
            c->want_close = true;
        }
        return;
    }
    process(c);
}

static void on_timer(nx_loop *loop, nx_timer *t)
{
    nx_conn *c = nx_container_of(t, nx_conn, timer);
    if (output_pending(c) || !(c->state == ST_BODY || c->head_started)) {
        conn_close(c); /* a client that stopped reading, or an idle keep-alive */
        return;
    }
    fail(c, 408,
         c->state == ST_BODY ? "the request body did not arrive in time"
                             : "the request head did not arrive in time",
         req_path(c));
    process(c);
}

void nx_http_drain(nx_http_ctx *ctx)
{
    ctx->draining = true;
    /* Idle connections get the drain grace instead of their keep-alive time. */
    for (nx_conn *c = ctx->conns; c; c = c->next)
        if (c->state == ST_HEAD && !c->head_started && !output_pending(c))
            arm_timer(c);
}

size_t nx_http_close_all(nx_http_ctx *ctx)
{
    size_t cut = ctx->inflight;
    while (ctx->conns)
        conn_close(ctx->conns);
    return cut;
}
