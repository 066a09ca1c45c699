/*
 * http/exchange.h - the request and response structs behind the opaque public types.
 *
 * Both live in the request's arena, in one allocation. Protocol code (http1, later
 * http2) fills the request, runs the handler, and serializes the response; handlers see
 * only the accessors of <nexus/http.h>.
 */
#ifndef NX_HTTP_EXCHANGE_H
#define NX_HTTP_EXCHANGE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <nexus/http.h>

#include "http/router.h"

#define NX_REQUEST_ID_MAX 128

typedef struct nx_res_hdr {
    struct nx_res_hdr *next;
    const char *name;
    const char *value;
} nx_res_hdr;

struct nx_res {
    int status;
    const char *content_type;
    const char *body;
    size_t body_len;
    nx_res_hdr *headers, **headers_tail;
    int file_fd; /* -1 unless the body is a file */
    uint64_t file_size;
    bool set; /* a handler gave a status or body */
};

typedef struct nx_header {
    nx_str name;
    nx_str value; /* NUL-terminated in place */
} nx_header;

struct nx_req {
    nx_arena *arena;
    const char *method; /* NUL-terminated */
    size_t method_len;
    const char *path; /* NUL-terminated */
    size_t path_len;
    const char *query; /* NUL-terminated, "" when absent */
    nx_str target;
    int version;
    nx_header *headers;
    size_t nheaders;
    nx_str body;
    nx_match match;
    const struct sockaddr *peer;
    char *client_addr; /* formatted on first use */
    char id[NX_REQUEST_ID_MAX + 1];
    uint64_t deadline; /* monotonic ms: waits end with NX_ERR after it */
    bool is_head;
    bool timed_out;
    bool client_gone;         /* the client closed the connection while the handler ran */
    struct nx_db_session *db; /* the request's database state, made on first use */
    void *loop;               /* nx_loop of the worker running it */
    const nx_router *router;
    nx_res res;
};

/* A request/response pair in arena a, with the response at its defaults. */
nx_req *nx_exchange_new(nx_arena *a);

/* Starts this process's request-id sequence; each worker calls it after fork. */
void nx_request_ids_init(void);

/* Sets req->id from the client's X-Request-ID when it is valid, else generates one. */
void nx_exchange_set_id(nx_req *req, const char *client_id);

/* Runs routing and the handler (or a built-in answer: 404, 405, OPTIONS, 500). */
void nx_exchange_dispatch(nx_req *req, const nx_router *router);

/* The router the workers dispatch to (built before forking). */
extern nx_router *nx_app_router;

#endif
