/*
 * testkit - a plugin used only by the integration tests (tests/integration).
 *
 * Each route exposes one server behaviour to a black-box client: parking a coroutine,
 * echoing what the parser handed the handler, reporting which worker served, crashing a
 * worker from inside, and a readiness check the tests can flip with a file. It uses only
 * the public API in include/nexus/, as any third-party plugin would.
 */
#include <nexus/nexus.h>

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* Largest body /test/big will build, so a typo in a test cannot exhaust a worker. */
#define BIG_MAX (64u * 1024u * 1024u)

/* Longest /test/sleep, far above any timeout the tests configure. */
#define SLEEP_MAX_MS 600000u

/*
 * Parses a non-negative decimal query parameter; false when absent, empty, not all
 * digits, or above max.
 */
static bool query_u64(nx_req *req, const char *name, uint64_t max, uint64_t *out)
{
    const char *s = nx_req_query(req, name);
    if (!s || !*s)
        return false;
    uint64_t v = 0;
    for (const char *c = s; *c; c++) {
        if (*c < '0' || *c > '9')
            return false;
        v = v * 10 + (uint64_t)(*c - '0');
        if (v > max)
            return false;
    }
    *out = v;
    return true;
}

/* GET /test/sleep?ms=N: parks this coroutine only, then answers "slept N". */
static void sleep_handler(nx_req *req, nx_res *res)
{
    uint64_t ms;
    if (!query_u64(req, "ms", SLEEP_MAX_MS, &ms)) {
        nx_problem(res, 400, "ms must be an integer in 0..%u", SLEEP_MAX_MS);
        return;
    }
    if (nx_sleep_ms(req, ms) != NX_OK) {
        nx_problem(res, 503, "deadline passed while sleeping");
        return;
    }
    nx_text(res, 200, nx_arena_printf(nx_req_arena(req), "slept %llu", (unsigned long long)ms));
}

/* POST|PUT /test/echo: the body back, with the request's Content-Type. */
static void echo_handler(nx_req *req, nx_res *res)
{
    nx_str body = nx_req_body(req);
    const char *ctype = nx_req_header(req, "Content-Type");
    char len[32];
    snprintf(len, sizeof len, "%zu", body.len);
    nx_res_header(res, "X-Body-Length", len);
    nx_res_header(res, "X-Method", nx_req_method(req));
    nx_res_status(res, 200);
    nx_res_body(res, ctype ? ctype : "application/octet-stream", body.ptr, body.len);
}

/*
 * GET /test/headers: the request headers as one JSON object, names lowercased; a header
 * that occurs more than once has its values joined with ", " in order of arrival.
 */
static void headers_handler(nx_req *req, nx_res *res)
{
    json_t *obj = json_object();
    if (!obj) {
        nx_json(res, 200, NULL);
        return;
    }
    nx_arena *a = nx_req_arena(req);
    size_t n = nx_req_header_count(req);
    for (size_t i = 0; i < n; i++) {
        nx_str name, value;
        if (!nx_req_header_at(req, i, &name, &value))
            continue;
        char *key = nx_arena_strndup(a, name.ptr, name.len);
        for (char *c = key; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
        json_t *old = json_object_get(obj, key);
        json_t *val;
        if (old)
            val = json_stringn(
                nx_arena_printf(a, "%s, %.*s", json_string_value(old), (int)value.len, value.ptr),
                json_string_length(old) + 2 + value.len);
        else
            val = json_stringn(value.ptr, value.len);
        /* A value that is not UTF-8 (obs-text) is reported as null. */
        json_object_set_new(obj, key, val ? val : json_null());
    }
    json_object_set_new(obj, "x-testkit-count", json_integer((json_int_t)n));
    nx_json(res, 200, obj);
}

/* GET /test/params/{id:int}/{name}: both captures, id converted by the API. */
static void params_handler(nx_req *req, nx_res *res)
{
    int64_t id;
    if (!nx_req_param_i64(req, "id", &id)) {
        nx_problem(res, 500, "router matched {id:int} but nx_req_param_i64 failed");
        return;
    }
    const char *name = nx_req_param(req, "name");
    nx_json(res, 200,
            json_pack("{s:I, s:s, s:s}", "id", (json_int_t)id, "id_raw", nx_req_param(req, "id"),
                      "name", name ? name : ""));
}

/* GET /test/files/{rest...}: the rest of the path as captured. */
static void files_handler(nx_req *req, nx_res *res)
{
    const char *rest = nx_req_param(req, "rest");
    nx_json(res, 200, json_pack("{s:s?}", "rest", rest));
}

/* GET /test/pid: which worker process served this request. */
static void pid_handler(nx_req *req, nx_res *res)
{
    nx_text(res, 200, nx_arena_printf(nx_req_arena(req), "%ld", (long)getpid()));
}

/* GET /test/crash: kills the serving worker from inside (the master must replace it). */
static void crash_handler(nx_req *req, nx_res *res)
{
    (void)req;
    (void)res;
    nx_log_warn("testkit: /test/crash called, aborting worker %ld", (long)getpid());
    abort();
}

/* GET /test/spin?ms=N: computes for N ms without ever yielding (a stuck handler). */
static void spin_handler(nx_req *req, nx_res *res)
{
    uint64_t ms;
    if (!query_u64(req, "ms", 600000, &ms)) {
        nx_problem(res, 400, "ms must be a number of milliseconds up to 600000");
        return;
    }
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    volatile uint64_t spins = 0;
    do {
        spins++;
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((uint64_t)(now.tv_sec - start.tv_sec) * 1000 +
                 (uint64_t)((now.tv_nsec - start.tv_nsec) / 1000000) <
             ms);
    nx_text(res, 200, nx_arena_printf(nx_req_arena(req), "%d", (int)getpid()));
}

/* GET /test/big?n=N: N bytes of a predictable pattern ("0123456789" repeated). */
static void big_handler(nx_req *req, nx_res *res)
{
    uint64_t n;
    if (!query_u64(req, "n", BIG_MAX, &n)) {
        nx_problem(res, 400, "n must be an integer in 0..%u", BIG_MAX);
        return;
    }
    char *buf = nx_arena_alloc(nx_req_arena(req), n ? (size_t)n : 1);
    for (uint64_t i = 0; i < n; i++)
        buf[i] = (char)('0' + i % 10);
    nx_res_status(res, 200);
    nx_res_body_static(res, "application/octet-stream", buf, (size_t)n);
}

/* DELETE|PUT /test/methods: a path without GET, for 405 and OPTIONS tests. */
static void methods_handler(nx_req *req, nx_res *res)
{
    nx_text(res, 200, nx_req_method(req));
}

/* GET /test/query?name=...: the decoded value (null when absent) and the raw string. */
static void query_handler(nx_req *req, nx_res *res)
{
    const char *v = nx_req_query(req, "name");
    nx_json(res, 200, json_pack("{s:s?, s:s}", "name", v, "raw", nx_req_query_string(req)));
}

/* GET /test/client: the client address as the server saw it. */
static void client_handler(nx_req *req, nx_res *res)
{
    nx_text(res, 200, nx_req_client_addr(req));
}

/* GET /test/reqid: the request id as the handler sees it. */
static void reqid_handler(nx_req *req, nx_res *res)
{
    nx_text(res, 200, nx_req_id(req));
}

/* GET /test/file?path=...: nx_res_file on that path. */
static void file_handler(nx_req *req, nx_res *res)
{
    const char *path = nx_req_query(req, "path");
    if (!path || !*path) {
        nx_problem(res, 400, "path is required");
        return;
    }
    nx_res_file(res, path);
}

/* GET /test/info: method, path, raw query and HTTP version as the handler sees them. */
static void info_handler(nx_req *req, nx_res *res)
{
    nx_json(res, 200,
            json_pack("{s:s, s:s, s:s, s:i}", "method", nx_req_method(req), "path",
                      nx_req_path(req), "query", nx_req_query_string(req), "version",
                      nx_req_version(req)));
}

/* "*" /test/any: any method; answers with the method. */
static void any_handler(nx_req *req, nx_res *res)
{
    nx_text(res, 200, nx_req_method(req));
}

/* GET /test/status?code=N: an nx_problem with that status, for error-shape tests. */
static void status_handler(nx_req *req, nx_res *res)
{
    uint64_t code;
    if (!query_u64(req, "code", 599, &code) || code < 400) {
        nx_problem(res, 400, "code must be in 400..599");
        return;
    }
    nx_problem(res, (int)code, "testkit asked for %d", (int)code);
}

/* GET /test/badheader: nx_res_header must refuse CR/LF (response splitting) and the
 * headers that frame the message, which only the server may write. */
static void badheader_handler(nx_req *req, nx_res *res)
{
    (void)req;
    int a = nx_res_header(res, "X-Split", "a\r\nX-Injected: 1");
    int b = nx_res_header(res, "X-Bad\r\nName", "v");
    int c = nx_res_header(res, "X-Good", "fine");
    int d = nx_res_header(res, "content-length", "0");
    int e = nx_res_header(res, "Transfer-Encoding", "chunked");
    char out[96];
    snprintf(out, sizeof out, "%d %d %d %d %d", a, b, c, d, e);
    nx_text(res, 200, out);
}

/*
 * Readiness: fails while the file named by NEXUS_TEST_NOT_READY_FILE exists, so a test
 * can flip /ready without restarting the server.
 */
static bool testkit_ready(const char **why)
{
    const char *path = getenv("NEXUS_TEST_NOT_READY_FILE");
    if (path && *path && access(path, F_OK) == 0) {
        *why = "testkit not-ready file exists";
        return false;
    }
    return true;
}

/* Settings: read from plugins.testkit.* and NEXUS_PLUGINS_TESTKIT_*, checked by type. */
static const nx_plugin_setting settings[] = {
    {"greeting", NX_SETTING_STR, "hello", "text of /test/settings"},
    {"limit", NX_SETTING_INT, "10", "an integer"},
    {"verbose", NX_SETTING_BOOL, "false", "a boolean"},
    {"delay", NX_SETTING_DURATION, "250ms", "a duration"},
    {"buffer", NX_SETTING_SIZE, "4k", "a size"},
    {"token", NX_SETTING_STR, "", "a secret", true},
    {"fail_worker_start", NX_SETTING_BOOL, "false", "the worker start hook fails"},
    {NULL},
};

static nx_plugin *self;

/* Fails when fail_worker_start is set: a worker that can never start (reload tests). */
static int testkit_worker_start(nx_plugin *p)
{
    if (nx_plugin_config_bool(p, "fail_worker_start")) {
        nx_log_error("testkit: fail_worker_start is set; this worker does not start");
        return -1;
    }
    return 0;
}

/* GET /test/settings: the plugin's settings as it reads them, and the worker's pid. */
static void settings_handler(nx_req *req, nx_res *res)
{
    (void)req;
    nx_json(res, 200,
            json_pack("{s:s, s:I, s:b, s:I, s:I, s:i, s:i}", "greeting",
                      nx_plugin_config(self, "greeting"), "limit",
                      (json_int_t)nx_plugin_config_int(self, "limit"), "verbose",
                      nx_plugin_config_bool(self, "verbose"), "delay_ms",
                      (json_int_t)nx_plugin_config_ms(self, "delay"), "buffer",
                      (json_int_t)nx_plugin_config_size(self, "buffer"), "token_length",
                      (int)strlen(nx_plugin_config(self, "token")), "pid", (int)getpid()));
}

/* The stampede test's computation: slow, and counted in the cache itself. */
static int slow_compute(nx_req *req, void *arg, nx_str *value)
{
    const char *key = arg;
    int64_t n = 0;
    nx_cache_incr(req, nx_arena_printf(nx_req_arena(req), "computes:%s", key), 1, 60000, &n);
    if (nx_sleep_ms(req, 300) != NX_OK)
        return NX_ERR;
    value->ptr = nx_arena_printf(nx_req_arena(req), "computed by %d", (int)getpid());
    value->len = strlen(value->ptr);
    return NX_OK;
}

/* GET /test/compute?key=: nx_cache_get_or_compute over slow_compute. */
static void compute_handler(nx_req *req, nx_res *res)
{
    const char *key = nx_req_query(req, "key");
    nx_str v;
    if (!key || nx_cache_get_or_compute(req, key, 60000, slow_compute, (void *)key, &v) != NX_OK) {
        nx_problem(res, 503, "no value for %s", key ? key : "(no key)");
        return;
    }
    nx_res_body(res, "text/plain", v.ptr, v.len);
}

/* GET /test/computes?key=: how many times the value of key was computed. */
static void computes_handler(nx_req *req, nx_res *res)
{
    const char *key = nx_req_query(req, "key");
    nx_str v;
    bool hit = key && nx_cache_get(req, nx_arena_printf(nx_req_arena(req), "computes:%s", key), &v);
    nx_text(res, 200, hit ? v.ptr : "0");
}

/* GET /test/page?key=&tag=: a response cached whole, tagged; its body counts the misses. */
static void page_handler(nx_req *req, nx_res *res)
{
    static int renders;
    const char *key = nx_req_query(req, "key");
    const char *tag = nx_req_query(req, "tag");
    if (key && nx_cache_serve(req, res, key))
        return;
    const char *tags[] = {tag, NULL};
    const char *body =
        nx_arena_printf(nx_req_arena(req), "render %d by %d", ++renders, (int)getpid());
    nx_res_status(res, 203);
    nx_res_body(res, "text/x-page", body, strlen(body));
    if (key)
        nx_cache_store(req, res, key, 60000, tag ? tags : NULL);
}

/* POST /test/invalidate?tag= and POST /test/drop?prefix= */
static void invalidate_handler(nx_req *req, nx_res *res)
{
    const char *tag = nx_req_query(req, "tag");
    const char *prefix = nx_req_query(req, "prefix");
    int rc = tag ? nx_cache_invalidate_tag(req, tag) : nx_cache_delete_prefix(req, prefix);
    if (rc != NX_OK)
        nx_problem(res, 503, "not invalidated");
    else
        nx_res_status(res, 204);
}

/* The messages this worker received on "test.events" (the last 32). */
static char received[32][64];
static size_t nreceived;

static void on_event(const char *channel, const void *data, size_t len)
{
    size_t n = len < sizeof(received[0]) - 1 ? len : sizeof(received[0]) - 1;
    char *slot = received[nreceived++ % 32];
    memcpy(slot, data, n);
    slot[n] = '\0';
}

/* POST /test/publish: the body on "test.events". */
static void publish_handler(nx_req *req, nx_res *res)
{
    nx_str body = nx_req_body(req);
    if (nx_publish(req, "test.events", body.ptr, body.len) != NX_OK)
        nx_problem(res, 503, "not published");
    else
        nx_res_status(res, 204);
}

/* GET /test/events: what this worker received, oldest first, and its pid. */
static void events_handler(nx_req *req, nx_res *res)
{
    json_t *list = json_array();
    size_t first = nreceived > 32 ? nreceived - 32 : 0;
    for (size_t i = first; i < nreceived; i++)
        json_array_append_new(list, json_string(received[i % 32]));
    nx_json(res, 200, json_pack("{s:o, s:i}", "events", list, "pid", (int)getpid()));
}

static int testkit_init(nx_plugin *p)
{
    self = p;
    if (nx_subscribe(p, "test.events", on_event) != NX_OK)
        return -1;
    static const struct {
        const char *method;
        const char *pattern;
        nx_handler_fn fn;
    } routes[] = {
        {"GET", "/test/sleep", sleep_handler},
        {"POST", "/test/echo", echo_handler},
        {"PUT", "/test/echo", echo_handler},
        {"GET", "/test/headers", headers_handler},
        {"GET", "/test/params/{id:int}/{name}", params_handler},
        {"GET", "/test/files/{rest...}", files_handler},
        {"GET", "/test/pid", pid_handler},
        {"GET", "/test/crash", crash_handler},
        {"GET", "/test/spin", spin_handler},
        {"GET", "/test/big", big_handler},
        {"DELETE", "/test/methods", methods_handler},
        {"PUT", "/test/methods", methods_handler},
        {"GET", "/test/query", query_handler},
        {"GET", "/test/client", client_handler},
        {"GET", "/test/reqid", reqid_handler},
        {"GET", "/test/file", file_handler},
        {"GET", "/test/info", info_handler},
        {"*", "/test/any", any_handler},
        {"GET", "/test/status", status_handler},
        {"GET", "/test/badheader", badheader_handler},
        {"GET", "/test/settings", settings_handler},
        {"GET", "/test/compute", compute_handler},
        {"GET", "/test/computes", computes_handler},
        {"POST", "/test/publish", publish_handler},
        {"GET", "/test/page", page_handler},
        {"POST", "/test/invalidate", invalidate_handler},
        {"GET", "/test/events", events_handler},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (nx_route(p, routes[i].method, routes[i].pattern, routes[i].fn, NX_ROUTE_DEFAULT) !=
            NX_OK) {
            nx_log_error("testkit: cannot register %s %s", routes[i].method, routes[i].pattern);
            return -1;
        }
    }
    if (nx_on_worker(p, testkit_worker_start, NULL) != NX_OK)
        return -1;
    if (nx_ready_check(p, "testkit", testkit_ready) != NX_OK) {
        nx_log_error("testkit: cannot register the readiness check");
        return -1;
    }
    return 0;
}

NEXUS_PLUGIN_WITH_SETTINGS("testkit", "1.0.0", testkit_init, NULL, settings);
