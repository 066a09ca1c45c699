/*
 * request.c - the request accessors of <nexus/http.h>, and request ids.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/util.h"
#include "core/wait.h"
#include "http/exchange.h"

nx_req *nx_exchange_new(nx_arena *a)
{
    nx_req *req = nx_arena_alloc(a, sizeof(*req));
    memset(req, 0, offsetof(nx_req, id));
    req->id[0] = '\0';
    req->deadline = 0;
    req->is_head = false;
    req->timed_out = false;
    req->client_gone = false;
    req->db = NULL;
    req->loop = NULL;
    req->router = NULL;
    req->arena = a;
    req->query = "";
    nx_res *res = &req->res;
    res->status = 200;
    res->content_type = NULL;
    res->body = NULL;
    res->body_len = 0;
    res->headers = NULL;
    res->headers_tail = &res->headers;
    res->file_fd = -1;
    res->file_size = 0;
    res->set = false;
    return req;
}

/* ---- request ids ---- */

static char id_prefix[17];
static uint32_t id_counter;

static const char hex[] = "0123456789abcdef";

void nx_request_ids_init(void)
{
    /* A random prefix per process plus a counter: unique without a system call per
     * request. Called again in each forked worker, which must not share the prefix. */
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed))
        seed = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ nx_now_ms();
    for (int i = 0; i < 16; i++)
        id_prefix[i] = hex[(seed >> (i * 4)) & 15];
    id_prefix[16] = '\0';
    id_counter = 0;
}

/* A client-chosen id is echoed only when it is short and made of safe characters: it
 * ends up in our logs and response headers. */
static bool id_is_valid(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n == NX_REQUEST_ID_MAX ||
            !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':' || c == '+' || c == '='))
            return false;
    }
    return n > 0;
}

void nx_exchange_set_id(nx_req *req, const char *client_id)
{
    if (client_id && id_is_valid(client_id)) {
        strcpy(req->id, client_id);
        return;
    }
    if (!id_prefix[0])
        nx_request_ids_init();
    uint32_t c = ++id_counter;
    memcpy(req->id, id_prefix, 16);
    for (int i = 0; i < 8; i++)
        req->id[16 + i] = hex[(c >> (28 - 4 * i)) & 15];
    req->id[24] = '\0';
}

/* ---- accessors ---- */

nx_arena *nx_req_arena(nx_req *req)
{
    return req->arena;
}

const char *nx_req_method(const nx_req *req)
{
    return req->method;
}

const char *nx_req_path(const nx_req *req)
{
    return req->path;
}

const char *nx_req_query_string(const nx_req *req)
{
    return req->query;
}

int nx_req_version(const nx_req *req)
{
    return req->version;
}

const char *nx_req_id(const nx_req *req)
{
    return req->id;
}

nx_str nx_req_body(const nx_req *req)
{
    return req->body;
}

const char *nx_req_header(const nx_req *req, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < req->nheaders; i++) {
        const nx_header *h = &req->headers[i];
        if (h->name.len == len && strncasecmp(h->name.ptr, name, len) == 0)
            return h->value.ptr;
    }
    return NULL;
}

size_t nx_req_header_count(const nx_req *req)
{
    return req->nheaders;
}

bool nx_req_header_at(const nx_req *req, size_t i, nx_str *name, nx_str *value)
{
    if (i >= req->nheaders)
        return false;
    *name = req->headers[i].name;
    *value = req->headers[i].value;
    return true;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decodes [s, s+len) into the arena; plus_space for query strings. */
static char *decode(nx_arena *a, const char *s, size_t len, bool plus_space)
{
    char *out = nx_arena_alloc(a, len + 1), *o = out;
    for (size_t i = 0; i < len; i++) {
        int h, l;
        if (s[i] == '%' && i + 2 < len && (h = hexval(s[i + 1])) >= 0 &&
            (l = hexval(s[i + 2])) >= 0) {
            *o++ = (char)(h * 16 + l);
            i += 2;
        } else if (plus_space && s[i] == '+') {
            *o++ = ' ';
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

const char *nx_req_query(nx_req *req, const char *name)
{
    size_t nlen = strlen(name);
    const char *q = req->query;
    while (*q) {
        const char *amp = strchr(q, '&');
        const char *e = amp ? amp : q + strlen(q);
        const char *eq = memchr(q, '=', (size_t)(e - q));
        const char *ke = eq ? eq : e;
        char *key = decode(req->arena, q, (size_t)(ke - q), true);
        if (strlen(key) == nlen && memcmp(key, name, nlen) == 0)
            return eq ? decode(req->arena, eq + 1, (size_t)(e - eq - 1), true) : "";
        if (!amp)
            break;
        q = amp + 1;
    }
    return NULL;
}

const char *nx_req_param(const nx_req *req, const char *name)
{
    for (size_t i = 0; i < req->match.nparams; i++) {
        const nx_param *p = &req->match.params[i];
        if (strcmp(p->name, name) == 0)
            return decode(req->arena, p->value.ptr, p->value.len, false);
    }
    return NULL;
}

bool nx_req_param_i64(const nx_req *req, const char *name, int64_t *out)
{
    const char *v = nx_req_param(req, name);
    if (!v)
        return false;
    bool neg = v[0] == '-';
    int64_t x;
    if (nx_parse_i64(v + neg, strlen(v + neg), &x) != 0)
        return false;
    *out = neg ? -x : x;
    return true;
}

const char *nx_req_client_addr(const nx_req *req)
{
    nx_req *r = (nx_req *)req;
    if (r->client_addr)
        return r->client_addr;
    char buf[INET6_ADDRSTRLEN] = "-";
    if (req->peer) {
        if (req->peer->sa_family == AF_INET) {
            const struct sockaddr_in *s = (const struct sockaddr_in *)req->peer;
            inet_ntop(AF_INET, &s->sin_addr, buf, sizeof(buf));
        } else if (req->peer->sa_family == AF_INET6) {
            const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)req->peer;
            inet_ntop(AF_INET6, &s->sin6_addr, buf, sizeof(buf));
        }
    }
    r->client_addr = nx_arena_strdup(r->arena, buf);
    return r->client_addr;
}

int nx_sleep_ms(nx_req *req, uint64_t ms)
{
    nx_loop *loop = req->loop;
    if (!loop)
        return NX_ERR;
    uint64_t when = nx_loop_now(loop) + ms;
    int rc = NX_OK;
    if (req->deadline && when > req->deadline) {
        when = req->deadline;
        rc = NX_ERR;
    }
    if (nx_wait_until(loop, when) != NX_OK || req->client_gone)
        return NX_ERR;
    if (rc != NX_OK)
        req->timed_out = true;
    return rc;
}
