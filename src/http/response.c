/*
 * response.c - the response API of <nexus/http.h>, problem details, and dispatch.
 *
 * Nothing here knows the protocol: a response is a status, headers and a body (bytes or
 * a file); http1.c and later http2 turn it into bytes on the wire.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/util.h"
#include "db/db_impl.h"
#include "http/exchange.h"
#include "http/middleware.h"

nx_router *nx_app_router;

const char *nx_status_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

static nx_req *req_of(nx_res *res)
{
    return nx_container_of(res, nx_req, res);
}

void nx_res_status(nx_res *res, int status)
{
    res->status = status >= 100 && status <= 999 ? status : 500;
    res->set = true;
}

static bool has_crlf(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

/* Headers that frame the message belong to the protocol layer: a handler setting them
 * could make the server's own framing lie (a response-splitting vector). */
static bool is_framing_header(const char *name)
{
    return strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Transfer-Encoding") == 0 ||
           strcasecmp(name, "Connection") == 0;
}

int nx_res_header(nx_res *res, const char *name, const char *value)
{
    if (!name || !value || !*name || has_crlf(name) || has_crlf(value) || strchr(name, ':') ||
        is_framing_header(name))
        return NX_ERR;
    nx_arena *a = req_of(res)->arena;
    if (strcasecmp(name, "Content-Type") == 0) {
        res->content_type = nx_arena_strdup(a, value); /* one Content-Type, not two */
        return NX_OK;
    }
    nx_res_hdr *h = nx_arena_alloc(a, sizeof(*h));
    h->name = nx_arena_strdup(a, name);
    h->value = nx_arena_strdup(a, value);
    h->next = NULL;
    *res->headers_tail = h;
    res->headers_tail = &h->next;
    return NX_OK;
}

static void drop_file(nx_res *res)
{
    /* The fd itself is closed by the arena cleanup registered when it was opened. */
    res->file_fd = -1;
    res->file_size = 0;
}

void nx_res_body_static(nx_res *res, const char *content_type, const void *body, size_t len)
{
    drop_file(res);
    res->content_type = content_type;
    res->body = body;
    res->body_len = len;
    res->set = true;
}

void nx_res_body(nx_res *res, const char *content_type, const void *body, size_t len)
{
    nx_arena *a = req_of(res)->arena;
    char *copy = nx_arena_alloc(a, len ? len : 1);
    if (len)
        memcpy(copy, body, len);
    nx_res_body_static(res, content_type ? nx_arena_strdup(a, content_type) : NULL, copy, len);
}

void nx_text(nx_res *res, int status, const char *text)
{
    nx_res_status(res, status);
    nx_res_body(res, "text/plain; charset=utf-8", text, strlen(text));
}

/* Serializes json into the arena; NULL on failure. */
static char *dump_json(nx_arena *a, const json_t *json, size_t *len)
{
    char small[1024];
    size_t n = json_dumpb(json, small, sizeof(small), JSON_COMPACT);
    if (n == 0)
        return NULL;
    char *out = nx_arena_alloc(a, n);
    if (n <= sizeof(small))
        memcpy(out, small, n);
    else if (json_dumpb(json, out, n, JSON_COMPACT) != n)
        return NULL;
    *len = n;
    return out;
}

void nx_json(nx_res *res, int status, void *json)
{
    json_t *j = json;
    size_t len = 0;
    char *body = j ? dump_json(req_of(res)->arena, j, &len) : NULL;
    json_decref(j);
    if (!body) {
        nx_problem(res, 500, "the response could not be serialized as JSON");
        return;
    }
    nx_res_status(res, status);
    nx_res_body_static(res, "application/json", body, len);
}

void nx_problem(nx_res *res, int status, const char *detail_fmt, ...)
{
    nx_req *req = req_of(res);
    char detail[512] = "";
    if (detail_fmt) {
        va_list ap;
        va_start(ap, detail_fmt);
        vsnprintf(detail, sizeof(detail), detail_fmt, ap);
        va_end(ap);
    }
    json_t *j = json_object();
    json_object_set_new(j, "type", json_string("about:blank"));
    json_object_set_new(j, "title", json_string(nx_status_reason(status)));
    json_object_set_new(j, "status", json_integer(status));
    /* Invalid UTF-8 (from a path, say) makes json_string fail: fall back to a note. */
    json_t *d = json_string(detail);
    json_object_set_new(j, "detail", d ? d : json_string("(detail was not valid UTF-8)"));
    json_t *inst = req->path ? json_string(req->path) : NULL;
    if (inst)
        json_object_set_new(j, "instance", inst);
    json_object_set_new(j, "request_id", json_string(req->id));
    size_t len = 0;
    char *body = dump_json(req->arena, j, &len);
    json_decref(j);
    nx_res_status(res, status);
    if (body)
        nx_res_body_static(res, "application/problem+json", body, len);
    else
        nx_res_body_static(res, "text/plain", "error", 5);
}

static const char *content_type_for(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {"html", "text/html; charset=utf-8"},
        {"htm", "text/html; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"json", "application/json"},
        {"txt", "text/plain; charset=utf-8"},
        {"svg", "image/svg+xml"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},
        {"webp", "image/webp"},
        {"ico", "image/x-icon"},
        {"woff2", "font/woff2"},
        {"woff", "font/woff"},
        {"pdf", "application/pdf"},
        {"xml", "application/xml"},
        {"wasm", "application/wasm"},
    };
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    if (dot) {
        for (size_t i = 0; i < NX_ARRAY_LEN(types); i++)
            if (strcasecmp(dot + 1, types[i].ext) == 0)
                return types[i].type;
    }
    return "application/octet-stream";
}

static void close_fd(void *arg)
{
    close((int)(intptr_t)arg);
}

void nx_res_file(nx_res *res, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            nx_problem(res, 404, "no such file");
        else
            nx_problem(res, 403, "the file cannot be read");
        return;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        nx_problem(res, 404, "no such file");
        return;
    }
    nx_arena_on_cleanup(req_of(res)->arena, close_fd, (void *)(intptr_t)fd);
    nx_res_status(res, 200);
    res->content_type = content_type_for(path);
    res->body = NULL;
    res->body_len = 0;
    res->file_fd = fd;
    res->file_size = (uint64_t)st.st_size;
}

/* Routing and the handler, or the answer the router gives by itself. */
static void route(nx_req *req, enum nx_match_result m, const char *allow)
{
    nx_res *res = &req->res;
    switch (m) {
    case NX_MATCH_FOUND:
        req->match.handler(req, res);
        if (!res->set) {
            if (req->timed_out)
                nx_problem(res, 504, "the request took longer than the handler timeout");
            else
                nx_problem(res, 500, "the handler produced no response");
        }
        return;
    case NX_MATCH_NOT_FOUND:
        nx_problem(res, 404, "no route matches %s %s", req->method, req->path);
        return;
    case NX_MATCH_NO_METHOD:
        nx_problem(res, 405, "%s is not allowed on %s", req->method, req->path);
        nx_res_header(res, "Allow", allow);
        return;
    case NX_MATCH_OPTIONS:
        nx_res_status(res, 204);
        nx_res_header(res, "Allow", allow);
        return;
    }
}

void nx_exchange_dispatch(nx_req *req, const nx_router *router)
{
    char allow[160];
    if (req->path_len == 1 && req->path[0] == '*') {
        /* "OPTIONS * HTTP/1.1" asks about the server, not a resource (RFC 9110 9.3.7); the
         * parser admits the asterisk form for OPTIONS only. */
        nx_res_status(&req->res, 204);
        nx_res_header(&req->res, "Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
        return;
    }
    enum nx_match_result m = nx_router_match(router, req->method, req->method_len, req->path,
                                             req->path_len, &req->match, allow, sizeof(allow));
    /* The probes answer load balancers and orchestrators: no plugin's middleware (an auth
     * check, a rate limit) may stand in their way. */
    bool probe = m == NX_MATCH_FOUND && strcmp(req->match.route->owner, "nexus") == 0;
    if (probe) {
        route(req, m, allow);
        return;
    }
    bool stopped;
    size_t ran = nx_middleware_before(req, &req->res, &stopped);
    if (stopped && !req->res.set)
        nx_problem(&req->res, 500, "a middleware stopped the request without answering");
    if (!stopped)
        route(req, m, allow);
    nx_middleware_after(req, &req->res, ran);
    if (req->db)
        nx_db_request_end(req);
}
