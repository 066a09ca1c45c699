/*
 * nexus/http.h - the request and response seen by handlers.
 *
 * A handler receives an nx_req and fills an nx_res; neither knows which protocol carried
 * it. Every pointer returned by an nx_req accessor is borrowed: it stays valid until the
 * handler's response is complete and must not be freed. Strings handed to nx_res functions
 * are copied unless the function says otherwise, so they may live on the handler's stack.
 *
 * These functions may only be called from the handler's own coroutine, in a worker.
 */
#ifndef NEXUS_HTTP_H
#define NEXUS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nexus/arena.h>

typedef struct nx_req nx_req;
typedef struct nx_res nx_res;

/* A borrowed byte string: not NUL-terminated unless said so. */
typedef struct nx_str {
    const char *ptr;
    size_t len;
} nx_str;

#define NX_OK 0
#define NX_ERR (-1)
#define NX_AGAIN (-2)

/* ---- request ---------------------------------------------------------------------- */

/* The request's arena: everything allocated from it is released after the response. */
nx_arena *nx_req_arena(nx_req *req);

/* Method as sent ("GET"), NUL-terminated. */
const char *nx_req_method(const nx_req *req);

/* Path without the query, percent-decoding not applied, NUL-terminated. */
const char *nx_req_path(const nx_req *req);

/* Raw query string without '?', "" when absent, NUL-terminated. */
const char *nx_req_query_string(const nx_req *req);

/*
 * The first value of query parameter name, percent-decoded and NUL-terminated in the
 * request's arena; NULL when absent.
 */
const char *nx_req_query(nx_req *req, const char *name);

/* The first value of header name (case-insensitive), NUL-terminated; NULL when absent. */
const char *nx_req_header(const nx_req *req, const char *name);

/* Number of request headers and the i-th one (0-based), for iteration. */
size_t nx_req_header_count(const nx_req *req);
bool nx_req_header_at(const nx_req *req, size_t i, nx_str *name, nx_str *value);

/* Path parameter captured by the route ("{id}"), NUL-terminated; NULL when absent. */
const char *nx_req_param(const nx_req *req, const char *name);

/*
 * Path parameter converted to an integer. Returns false when it is absent or not a
 * decimal integer in range; *out is then untouched.
 */
bool nx_req_param_i64(const nx_req *req, const char *name, int64_t *out);

/* The request body (may be empty); body bytes are not NUL-terminated. */
nx_str nx_req_body(const nx_req *req);

/* Client address as text ("127.0.0.1", "::1"), NUL-terminated. */
const char *nx_req_client_addr(const nx_req *req);

/* The request id: the client's X-Request-ID when valid, else one generated here. */
const char *nx_req_id(const nx_req *req);

/* HTTP version as 10 * major + minor (11 for HTTP/1.1, 20 for HTTP/2). */
int nx_req_version(const nx_req *req);

/*
 * Parks the calling coroutine for ms milliseconds; the worker serves other requests
 * meanwhile. Returns NX_OK, or NX_ERR when the request's deadline passed first.
 */
int nx_sleep_ms(nx_req *req, uint64_t ms);

/* ---- response --------------------------------------------------------------------- */

/* Sets the status code (default 200). */
void nx_res_status(nx_res *res, int status);

/*
 * Adds a response header. Name and value are copied. Content-Type replaces the body's
 * content type. Returns NX_ERR (and adds nothing) when either contains CR or LF, which
 * would split the response, or for Content-Length, Transfer-Encoding and Connection,
 * which the server writes itself from the response it sends.
 */
int nx_res_header(nx_res *res, const char *name, const char *value);

/* Sets the body to a copy of the len bytes at body, with the given content type. */
void nx_res_body(nx_res *res, const char *content_type, const void *body, size_t len);

/*
 * Sets the body to len bytes at body without copying; the bytes must stay valid until the
 * response is complete (a string literal, or memory from the request's arena).
 */
void nx_res_body_static(nx_res *res, const char *content_type, const void *body, size_t len);

/* Sends status with a text/plain body. */
void nx_text(nx_res *res, int status, const char *text);

/*
 * Sends status with the JSON document `json` (a jansson json_t *; its reference is stolen,
 * so `nx_json(res, 200, json_pack(...))` leaks nothing). NULL sends a 500 problem.
 */
void nx_json(nx_res *res, int status, void *json);

/*
 * Sends the file at path with a content type from its extension, streamed from the
 * file. A missing file gives a 404 problem, an unreadable one a 403.
 */
void nx_res_file(nx_res *res, const char *path);

/*
 * Sends an RFC 9457 problem+json response: type about:blank, title from the status,
 * detail (printf format, may be NULL), instance = the request path, and the request id.
 */
void nx_problem(nx_res *res, int status, const char *detail_fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The standard reason phrase for status ("Not Found"), or "Unknown". */
const char *nx_status_reason(int status);

#endif
