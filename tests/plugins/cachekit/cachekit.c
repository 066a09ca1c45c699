/*
 * cachekit - a plugin used only by the cache integration tests (tests/integration/test_cache_*).
 *
 * Each route is one call of <nexus/cache.h>, with the key, ttl and delta from the query and
 * the value from the body, so a black-box client can drive the cache of a running server.
 * Every answer is JSON and carries the serving worker's pid, so that tests can tell workers
 * apart (and see that a value set through one worker is read through another):
 *
 *   GET    /cachekit/get?key=K             {"hit", "value" (text or null), "value_b64", "len"}
 *   GET    /cachekit/raw?key=K             the value's bytes (404 on a miss)
 *   POST   /cachekit/set?key=K&ttl_ms=T    body = the value; {"ok"}
 *   DELETE /cachekit/key?key=K             {"ok"}
 *   GET    /cachekit/exists?key=K          {"exists"}
 *   POST   /cachekit/incr?key=K&delta=D&ttl_ms=T            {"ok", "value"}
 *   POST   /cachekit/delete-prefix?prefix=P                 {"ok"}
 *   GET    /cachekit/compute?key=K&ttl_ms=T&sleep_ms=S      {"ok", "value"}
 *
 * ttl_ms absent or 0 means cache.default_ttl; "forever" means NX_CACHE_FOREVER. A missing
 * key parameter is passed as NULL, which the API must refuse without crashing.
 */
#include <nexus/cache.h>
#include <nexus/nexus.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "../kit_b64.h"

/* Longest sleep of /cachekit/compute, far above any timeout the tests configure. */
#define SLEEP_MAX_MS 600000

/* An answer object with the worker's pid; the caller adds its fields. */
static json_t *answer(void)
{
    return json_pack("{s:I}", "pid", (json_int_t)getpid());
}

/*
 * The ttl_ms parameter: 0 when absent (the default ttl), NX_CACHE_FOREVER for "forever".
 * False (after a 400) when it is not a number.
 */
static bool ttl_of(nx_req *req, nx_res *res, uint64_t *ttl)
{
    const char *s = nx_req_query(req, "ttl_ms");
    *ttl = 0;
    if (!s || !*s)
        return true;
    if (strcmp(s, "forever") == 0) {
        *ttl = NX_CACHE_FOREVER;
        return true;
    }
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || s[0] == '-') {
        nx_problem(res, 400, "ttl_ms must be a number of milliseconds or \"forever\"");
        return false;
    }
    *ttl = v;
    return true;
}

/* GET /cachekit/get?key=K: nx_cache_get. */
static void get_handler(nx_req *req, nx_res *res)
{
    nx_str v;
    json_t *a = answer();
    bool hit = nx_cache_get(req, nx_req_query(req, "key"), &v);
    json_object_set_new(a, "hit", json_boolean(hit));
    if (hit) {
        json_t *text = json_stringn(v.ptr, v.len); /* NULL when not UTF-8 */
        json_object_set_new(a, "value", text ? text : json_null());
        json_object_set_new(a, "value_b64", b64_json(v.ptr, v.len));
        json_object_set_new(a, "len", json_integer((json_int_t)v.len));
        /* The API promises a NUL after the value. */
        json_object_set_new(a, "nul_terminated", json_boolean(v.ptr[v.len] == '\0'));
    } else {
        json_object_set_new(a, "value", json_null());
        json_object_set_new(a, "miss_is_empty", json_boolean(v.ptr == NULL && v.len == 0));
    }
    nx_json(res, 200, a);
}

/* GET /cachekit/raw?key=K: the value's bytes as they are (large values, binary). */
static void raw_handler(nx_req *req, nx_res *res)
{
    nx_str v;
    char pid[24];
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    nx_res_header(res, "X-Worker-Pid", pid);
    if (!nx_cache_get(req, nx_req_query(req, "key"), &v)) {
        nx_problem(res, 404, "not in the cache");
        return;
    }
    nx_res_status(res, 200);
    nx_res_body_static(res, "application/octet-stream", v.ptr, v.len);
}

/* POST /cachekit/set?key=K&ttl_ms=T, the body as the value: nx_cache_set. */
static void set_handler(nx_req *req, nx_res *res)
{
    uint64_t ttl;
    if (!ttl_of(req, res, &ttl))
        return;
    nx_str body = nx_req_body(req);
    json_t *a = answer();
    int rc = nx_cache_set(req, nx_req_query(req, "key"), body.ptr, body.len, ttl);
    json_object_set_new(a, "ok", json_boolean(rc == NX_OK));
    nx_json(res, 200, a);
}

/* DELETE /cachekit/key?key=K: nx_cache_delete. */
static void delete_handler(nx_req *req, nx_res *res)
{
    json_t *a = answer();
    json_object_set_new(a, "ok",
                        json_boolean(nx_cache_delete(req, nx_req_query(req, "key")) == NX_OK));
    nx_json(res, 200, a);
}

/* GET /cachekit/exists?key=K: nx_cache_exists. */
static void exists_handler(nx_req *req, nx_res *res)
{
    json_t *a = answer();
    json_object_set_new(a, "exists", json_boolean(nx_cache_exists(req, nx_req_query(req, "key"))));
    nx_json(res, 200, a);
}

/* POST /cachekit/incr?key=K&delta=D&ttl_ms=T: nx_cache_incr (delta 1 when absent). */
static void incr_handler(nx_req *req, nx_res *res)
{
    uint64_t ttl;
    if (!ttl_of(req, res, &ttl))
        return;
    const char *d = nx_req_query(req, "delta");
    int64_t delta = 1;
    if (d && *d) {
        char *end;
        delta = strtoll(d, &end, 10);
        if (*end) {
            nx_problem(res, 400, "delta must be an integer");
            return;
        }
    }
    int64_t v = 0;
    json_t *a = answer();
    int rc = nx_cache_incr(req, nx_req_query(req, "key"), delta, ttl, &v);
    json_object_set_new(a, "ok", json_boolean(rc == NX_OK));
    json_object_set_new(a, "value", rc == NX_OK ? json_integer((json_int_t)v) : json_null());
    nx_json(res, 200, a);
}

/* POST /cachekit/delete-prefix?prefix=P: nx_cache_delete_prefix. */
static void delete_prefix_handler(nx_req *req, nx_res *res)
{
    json_t *a = answer();
    int rc = nx_cache_delete_prefix(req, nx_req_query(req, "prefix"));
    json_object_set_new(a, "ok", json_boolean(rc == NX_OK));
    nx_json(res, 200, a);
}

typedef struct compute_arg {
    const char *key;
    uint64_t sleep_ms;
} compute_arg;

/* A slow computation, counted in the cache ("computes:K") so tests see how many ran. */
static int slow_compute(nx_req *req, void *arg, nx_str *value)
{
    compute_arg *c = arg;
    int64_t n = 0;
    nx_cache_incr(req, nx_arena_printf(nx_req_arena(req), "computes:%s", c->key), 1, 60000, &n);
    if (c->sleep_ms && nx_sleep_ms(req, c->sleep_ms) != NX_OK)
        return NX_ERR;
    value->ptr = nx_arena_printf(nx_req_arena(req), "computed by %ld", (long)getpid());
    value->len = strlen(value->ptr);
    return NX_OK;
}

/* GET /cachekit/compute?key=K&ttl_ms=T&sleep_ms=S: nx_cache_get_or_compute. */
static void compute_handler(nx_req *req, nx_res *res)
{
    uint64_t ttl;
    if (!ttl_of(req, res, &ttl))
        return;
    compute_arg c = {.key = nx_req_query(req, "key")};
    const char *s = nx_req_query(req, "sleep_ms");
    if (s && *s) {
        c.sleep_ms = strtoull(s, NULL, 10);
        if (c.sleep_ms > SLEEP_MAX_MS)
            c.sleep_ms = SLEEP_MAX_MS;
    }
    if (!c.key) {
        nx_problem(res, 400, "key is required");
        return;
    }
    nx_str v;
    json_t *a = answer();
    int rc = nx_cache_get_or_compute(req, c.key, ttl, slow_compute, &c, &v);
    json_object_set_new(a, "ok", json_boolean(rc == NX_OK));
    json_object_set_new(a, "value", rc == NX_OK ? json_stringn(v.ptr, v.len) : json_null());
    nx_json(res, 200, a);
}

static int cachekit_init(nx_plugin *p)
{
    static const struct {
        const char *method;
        const char *pattern;
        nx_handler_fn fn;
    } routes[] = {
        {"GET", "/cachekit/get", get_handler},
        {"GET", "/cachekit/raw", raw_handler},
        {"POST", "/cachekit/set", set_handler},
        {"DELETE", "/cachekit/key", delete_handler},
        {"GET", "/cachekit/exists", exists_handler},
        {"POST", "/cachekit/incr", incr_handler},
        {"POST", "/cachekit/delete-prefix", delete_prefix_handler},
        {"GET", "/cachekit/compute", compute_handler},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (nx_route(p, routes[i].method, routes[i].pattern, routes[i].fn, NX_ROUTE_DEFAULT) !=
            NX_OK) {
            nx_log_error("cachekit: cannot register %s %s", routes[i].method, routes[i].pattern);
            return -1;
        }
    }
    return 0;
}

NEXUS_PLUGIN("cachekit", "1.0.0", cachekit_init, NULL);
