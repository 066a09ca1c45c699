/*
 * http/http1.h - HTTP/1.1 connections (RFC 9112) on a worker's event loop.
 *
 * The worker accepts sockets and hands them here; this module reads, parses, runs each
 * request's handler in a coroutine, and writes responses in order, batching the responses
 * to pipelined requests into one write.
 */
#ifndef NX_HTTP_HTTP1_H
#define NX_HTTP_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/loop.h"
#include "http/exchange.h"
#include "http/http1_parse.h"

typedef struct nx_http_settings {
    nx_h1_limits limits;
    uint64_t max_body;         /* client_max_body_size: larger bodies get 413 */
    uint64_t body_buffer;      /* client_body_buffer_size: larger bodies go to a temp file */
    const char *body_temp_dir; /* where those files are made; NULL or "": $TMPDIR, /tmp */
    uint64_t keepalive_ms;     /* idle time before a keep-alive connection is closed */
    uint64_t header_ms;        /* time to receive a whole head once it started (408) */
    uint64_t body_ms;          /* longest pause while receiving a body (408) */
    uint64_t handler_ms;       /* a request's deadline for its waits (504) */
    uint64_t send_ms;          /* longest pause of a client that does not read (closed) */
} nx_http_settings;

/* Called after each response is queued, for the access log and counters. */
typedef void (*nx_http_done_fn)(void *arg, const nx_req *req, int status, uint64_t body_bytes);

typedef struct nx_http_ctx {
    nx_loop *loop;
    const nx_http_settings *set;
    const nx_router *router;
    nx_http_done_fn on_done;
    void (*on_close)(void *arg); /* a connection was closed (frees a slot) */
    void *arg;
    /* state, owned by http1.c */
    struct nx_conn *conns;   /* every open connection */
    struct nx_conn *zombies; /* closed in this iteration, freed at its end */
    size_t nconns;
    size_t inflight; /* requests whose handler has not finished */
    bool draining;
} nx_http_ctx;

/* Sets defaults: the guide's nginx limits, 5 s keep-alive, 10 s header and body, 30 s
 * handler, 60 s send. */
void nx_http_settings_default(nx_http_settings *s);

/*
 * At start: the folder for request bodies that go to temp files exists (a configured one
 * is created, mode 0700, with its parents) and takes files. NX_OK, or NX_ERR with the
 * reason in err; *configured tells whether the folder was set or is the default.
 */
int nx_http_body_temp_check(const nx_http_settings *s, bool *configured, char *err, size_t errlen);

/* Prepares ctx (loop, settings, router and hooks must be set by the caller first). */
void nx_http_ctx_init(nx_http_ctx *ctx);

/* Takes over a connected, non-blocking socket from a client at peer. */
void nx_http_conn_open(nx_http_ctx *ctx, int fd, const struct sockaddr *peer, socklen_t len);

/*
 * Starts draining: every response from now on says "Connection: close"; idle
 * connections are closed once idle for a short grace (a request already on its way is
 * still served); busy ones finish their current request and close.
 */
void nx_http_drain(nx_http_ctx *ctx);

/* Closes every connection at once (the graceful timeout ran out). Returns how many
 * requests were in flight and are cut. */
size_t nx_http_close_all(nx_http_ctx *ctx);

#endif
