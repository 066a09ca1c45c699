/*
 * router_test.c - the route tree: segment kinds, precedence, backtracking, captured
 * parameters, HEAD and OPTIONS handling, Allow lists, and every way nx_router_add refuses
 * a route.
 *
 * Matching is tested with tables: one route set, then rows of (method, path) and the
 * expected outcome, the route that answers ("GET /users/{id:int}"), its parameters
 * ("id=42", several joined by '|') and, for 405 and OPTIONS, the exact Allow string.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "core/util.h"
#include "http/router.h"

static void h_one(nx_req *req, nx_res *res)
{
}

static void h_two(nx_req *req, nx_res *res)
{
}

typedef struct route_def {
    const char *method;
    const char *pattern;
} route_def;

typedef struct match_case {
    const char *method;
    const char *path;
    enum nx_match_result res;
    const char *route;  /* "METHOD pattern" of the answering route (NX_MATCH_FOUND) */
    const char *params; /* "name=value|name=value", "" for none (NX_MATCH_FOUND) */
    const char *allow;  /* NX_MATCH_NO_METHOD and NX_MATCH_OPTIONS */
} match_case;

/* Table rows. */
/* clang-format off */
#define FOUND(m, p, route, params) {(m), (p), NX_MATCH_FOUND, (route), (params), NULL}
#define NOT_FOUND(m, p) {(m), (p), NX_MATCH_NOT_FOUND, NULL, NULL, NULL}
#define NO_METHOD(m, p, allow) {(m), (p), NX_MATCH_NO_METHOD, NULL, NULL, (allow)}
#define OPTIONS(m, p, allow) {(m), (p), NX_MATCH_OPTIONS, NULL, NULL, (allow)}
/* clang-format on */

static const char *result_name(enum nx_match_result r)
{
    switch (r) {
    case NX_MATCH_FOUND: return "FOUND";
    case NX_MATCH_NOT_FOUND: return "NOT_FOUND";
    case NX_MATCH_NO_METHOD: return "NO_METHOD";
    case NX_MATCH_OPTIONS: return "OPTIONS";
    }
    return "?";
}

static nx_router *build(const route_def *defs, size_t n)
{
    nx_router *r = nx_router_new();
    cr_assert(r != NULL);
    for (size_t i = 0; i < n; i++) {
        char err[256] = "";
        int rc =
            nx_router_add(r, defs[i].method, defs[i].pattern, h_one, 0, "test", err, sizeof(err));
        cr_assert_eq(rc, NX_OK, "adding %s %s failed: %s", defs[i].method, defs[i].pattern, err);
    }
    return r;
}

static void format_params(const nx_match *m, char *out, size_t len)
{
    size_t pos = 0;
    out[0] = '\0';
    for (size_t i = 0; i < m->nparams && pos < len; i++) {
        int n = snprintf(out + pos, len - pos, "%s%s=%.*s", i ? "|" : "", m->params[i].name,
                         (int)m->params[i].value.len, m->params[i].value.ptr);
        if (n < 0)
            break;
        pos += (size_t)n;
    }
}

static void run_cases(const nx_router *r, const match_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const match_case *c = &cases[i];
        nx_match m;
        memset(&m, 0, sizeof(m));
        char allow[160];
        strcpy(allow, "(untouched)");
        enum nx_match_result got = nx_router_match(r, c->method, strlen(c->method), c->path,
                                                   strlen(c->path), &m, allow, sizeof(allow));
        cr_expect_eq(got, c->res, "row %zu: %s %s: expected %s, got %s", i, c->method, c->path,
                     result_name(c->res), result_name(got));
        if (got != c->res)
            continue;
        if (got == NX_MATCH_FOUND) {
            char route[256], params[512];
            snprintf(route, sizeof(route), "%s %s", m.route->method, m.route->pattern);
            format_params(&m, params, sizeof(params));
            cr_expect_str_eq(route, c->route, "row %zu: %s %s: route '%s', expected '%s'", i,
                             c->method, c->path, route, c->route);
            cr_expect_str_eq(params, c->params, "row %zu: %s %s: params '%s', expected '%s'", i,
                             c->method, c->path, params, c->params);
            cr_expect(m.handler == h_one, "row %zu: handler not set", i);
        } else if (got == NX_MATCH_NO_METHOD || got == NX_MATCH_OPTIONS) {
            cr_expect_str_eq(allow, c->allow, "row %zu: %s %s: Allow '%s', expected '%s'", i,
                             c->method, c->path, allow, c->allow);
        }
    }
}

/* ---- matching ------------------------------------------------------------------------- */

static const route_def main_routes[] = {
    {"GET", "/"},
    {"GET", "/users"},
    {"POST", "/users"},
    {"GET", "/users/"},
    {"GET", "/users/me"},
    {"GET", "/users/me/settings"},
    {"GET", "/users/{id:int}"},
    {"GET", "/users/{name}"},
    {"GET", "/users/{uid}/posts"},
    {"GET", "/files/{path...}"},
    {"GET", "/static/*"},
    {"GET", "/a/b/c"},
    {"GET", "/a/{x}/d"},
    {"GET", "/a/*"},
    {"PUT", "/items/{id}"},
    {"DELETE", "/items/{id}"},
    {"*", "/any"},
    {"GET", "/any"},
    {"GET", "/opt"},
    {"OPTIONS", "/opt"},
    {"GET", "/s/{a:str}"},
    {"GET", "/p/{a}/{b}/x"},
    {"GET", "/p/{c}/y/z"},
    {"GET", "/q/{a:int}/{b}/x"},
    {"GET", "/q/{c}/{d}/y"},
    {"GET", "/m/lit"},
    {"POST", "/m/{v}"},
    {"HEAD", "/h"},
    {"GET", "/h"},
    {"GET", "/e//x"},
};

static const match_case main_cases[] = {
    /* literals, the root, trailing slashes */
    FOUND("GET", "/", "GET /", ""),
    FOUND("GET", "/users", "GET /users", ""),
    FOUND("GET", "/users/", "GET /users/", ""),
    FOUND("POST", "/users", "POST /users", ""),
    FOUND("GET", "/users/me", "GET /users/me", ""),
    FOUND("GET", "/users/me/settings", "GET /users/me/settings", ""),
    NOT_FOUND("GET", "/users/me/"),
    NOT_FOUND("GET", "/users//"),
    NOT_FOUND("GET", "/Users"),
    NOT_FOUND("GET", "/nope"),
    NOT_FOUND("GET", ""),
    NOT_FOUND("GET", "users"),
    NOT_FOUND("GET", "*"),
    FOUND("GET", "/e//x", "GET /e//x", ""),
    NOT_FOUND("GET", "/e/x"),
    /* {x:int} beats {x}; {x} needs a non-empty segment */
    FOUND("GET", "/users/42", "GET /users/{id:int}", "id=42"),
    FOUND("GET", "/users/0", "GET /users/{id:int}", "id=0"),
    FOUND("GET", "/users/-7", "GET /users/{id:int}", "id=-7"),
    FOUND("GET", "/users/1234567890123456789", "GET /users/{id:int}", "id=1234567890123456789"),
    FOUND("GET", "/users/12345678901234567890", "GET /users/{name}", "name=12345678901234567890"),
    FOUND("GET", "/users/-", "GET /users/{name}", "name=-"),
    FOUND("GET", "/users/4x", "GET /users/{name}", "name=4x"),
    FOUND("GET", "/users/+4", "GET /users/{name}", "name=+4"),
    FOUND("GET", "/users/a%20b", "GET /users/{name}", "name=a%20b"),
    FOUND("GET", "/users/%2F", "GET /users/{name}", "name=%2F"),
    FOUND("GET", "/s/hello", "GET /s/{a:str}", "a=hello"),
    NOT_FOUND("GET", "/s/"),
    /* backtracking: a literal (or int) branch failing deeper falls back to {x} */
    FOUND("GET", "/users/me/posts", "GET /users/{uid}/posts", "uid=me"),
    FOUND("GET", "/users/5/posts", "GET /users/{uid}/posts", "uid=5"),
    NOT_FOUND("GET", "/users/me/other"),
    FOUND("GET", "/a/b/c", "GET /a/b/c", ""),
    FOUND("GET", "/a/b/d", "GET /a/{x}/d", "x=b"),
    FOUND("GET", "/a/z/d", "GET /a/{x}/d", "x=z"),
    FOUND("GET", "/a/b/e", "GET /a/*", "*=b/e"),
    FOUND("GET", "/a/b/c/d", "GET /a/*", "*=b/c/d"),
    FOUND("GET", "/a/", "GET /a/*", "*="),
    NOT_FOUND("GET", "/a"),
    /* values captured in a failed branch do not leak into the answer */
    FOUND("GET", "/p/1/y/z", "GET /p/{c}/y/z", "c=1"),
    FOUND("GET", "/p/1/y/x", "GET /p/{a}/{b}/x", "a=1|b=y"),
    FOUND("GET", "/p/1/k/x", "GET /p/{a}/{b}/x", "a=1|b=k"),
    FOUND("GET", "/q/5/k/x", "GET /q/{a:int}/{b}/x", "a=5|b=k"),
    FOUND("GET", "/q/5/k/y", "GET /q/{c}/{d}/y", "c=5|d=k"),
    FOUND("GET", "/q/v/k/y", "GET /q/{c}/{d}/y", "c=v|d=k"),
    NOT_FOUND("GET", "/q/5/k/z"),
    /* wildcards: "{name...}" and "*" take the rest of the path, slashes included */
    FOUND("GET", "/files/a/b/c.txt", "GET /files/{path...}", "path=a/b/c.txt"),
    FOUND("GET", "/files/x", "GET /files/{path...}", "path=x"),
    FOUND("GET", "/files//x/", "GET /files/{path...}", "path=/x/"),
    FOUND("GET", "/files/", "GET /files/{path...}", "path="),
    NOT_FOUND("GET", "/files"),
    FOUND("GET", "/static/css/site.css", "GET /static/*", "*=css/site.css"),
    /* HEAD falls back to GET; an explicit HEAD route wins */
    FOUND("HEAD", "/users", "GET /users", ""),
    FOUND("HEAD", "/users/42", "GET /users/{id:int}", "id=42"),
    FOUND("HEAD", "/users/me/posts", "GET /users/{uid}/posts", "uid=me"),
    FOUND("HEAD", "/h", "HEAD /h", ""),
    FOUND("GET", "/h", "GET /h", ""),
    /* a method-specific fallback: the literal has no POST, the parameter has */
    FOUND("POST", "/m/lit", "POST /m/{v}", "v=lit"),
    FOUND("GET", "/m/lit", "GET /m/lit", ""),
    /* 405 with Allow: GET implies HEAD, OPTIONS always listed, registration order */
    NO_METHOD("DELETE", "/users", "GET, POST, HEAD, OPTIONS"),
    NO_METHOD("PATCH", "/users/me", "GET, HEAD, OPTIONS"),
    NO_METHOD("POST", "/", "GET, HEAD, OPTIONS"),
    NO_METHOD("GET", "/items/5", "PUT, DELETE, OPTIONS"),
    NO_METHOD("HEAD", "/items/5", "PUT, DELETE, OPTIONS"),
    FOUND("PUT", "/items/5", "PUT /items/{id}", "id=5"),
    FOUND("DELETE", "/items/abc", "DELETE /items/{id}", "id=abc"),
    NO_METHOD("GE", "/users", "GET, POST, HEAD, OPTIONS"),
    NO_METHOD("GETX", "/users", "GET, POST, HEAD, OPTIONS"),
    NO_METHOD("get", "/users", "GET, POST, HEAD, OPTIONS"),
    NO_METHOD("POST", "/h", "HEAD, GET, OPTIONS"),
    /* OPTIONS without an OPTIONS route: 204 with Allow; with one: the route */
    OPTIONS("OPTIONS", "/users", "GET, POST, HEAD, OPTIONS"),
    OPTIONS("OPTIONS", "/items/1", "PUT, DELETE, OPTIONS"),
    FOUND("OPTIONS", "/opt", "OPTIONS /opt", ""),
    NOT_FOUND("OPTIONS", "/nope"),
    /* "*" routes take any method; an exact method wins over "*" */
    FOUND("GET", "/any", "GET /any", ""),
    FOUND("POST", "/any", "* /any", ""),
    FOUND("BREW", "/any", "* /any", ""),
    FOUND("HEAD", "/any", "* /any", ""),
    FOUND("OPTIONS", "/any", "* /any", ""),
};

Test(router, match_table)
{
    nx_router *r = build(main_routes, NX_ARRAY_LEN(main_routes));
    run_cases(r, main_cases, NX_ARRAY_LEN(main_cases));
    nx_router_free(r);
}

/* Registration order must not change precedence. */
Test(router, match_table_reverse_registration)
{
    route_def rev[NX_ARRAY_LEN(main_routes)];
    for (size_t i = 0; i < NX_ARRAY_LEN(main_routes); i++)
        rev[i] = main_routes[NX_ARRAY_LEN(main_routes) - 1 - i];
    nx_router *r = build(rev, NX_ARRAY_LEN(rev));
    for (size_t i = 0; i < NX_ARRAY_LEN(main_cases); i++) {
        /* Allow lists follow registration order: compare only the outcome and route. */
        match_case c = main_cases[i];
        if (c.res == NX_MATCH_NO_METHOD || c.res == NX_MATCH_OPTIONS)
            continue;
        run_cases(r, &c, 1);
    }
    nx_router_free(r);
}

Test(router, empty_router_finds_nothing)
{
    nx_router *r = nx_router_new();
    nx_match m;
    char allow[64] = "";
    cr_expect_eq(nx_router_match(r, "GET", 3, "/", 1, &m, allow, sizeof(allow)),
                 NX_MATCH_NOT_FOUND);
    cr_expect_eq(nx_router_match(r, "OPTIONS", 7, "/x", 2, &m, allow, sizeof(allow)),
                 NX_MATCH_NOT_FOUND);
    nx_router_free(r);
    nx_router_free(NULL);
}

/* The path and method are (pointer, length): bytes past the length are not looked at. */
Test(router, path_and_method_are_not_nul_terminated)
{
    nx_router *r = nx_router_new();
    char err[128];
    cr_assert_eq(nx_router_add(r, "GET", "/users/{id:int}", h_one, 0, NULL, err, sizeof(err)),
                 NX_OK);
    cr_assert_eq(nx_router_add(r, "GET", "/users", h_two, 0, NULL, err, sizeof(err)), NX_OK);
    const char buf[] = "/users/42/more?x=1";
    nx_match m;
    char allow[64];
    cr_assert_eq(nx_router_match(r, "GETTING", 3, buf, 9, &m, allow, sizeof(allow)),
                 NX_MATCH_FOUND);
    cr_expect_str_eq(m.route->pattern, "/users/{id:int}");
    cr_assert_eq(m.nparams, 1);
    cr_expect_eq(m.params[0].value.ptr, buf + 7, "the value points into the path");
    cr_expect_eq(m.params[0].value.len, 2);
    cr_assert_eq(nx_router_match(r, "GETTING", 3, buf, 6, &m, allow, sizeof(allow)),
                 NX_MATCH_FOUND);
    cr_expect_eq(m.handler, h_two);
    cr_expect_str_eq(m.route->pattern, "/users");
    cr_expect_eq(m.nparams, 0);
    nx_router_free(r);
}

/* Handler, owner, flags and names come back with the match; strings are copied at add. */
Test(router, match_carries_route_info)
{
    nx_router *r = nx_router_new();
    char err[128], pattern[64], owner[16];
    strcpy(pattern, "/blog/{slug}/c/{n:int}");
    strcpy(owner, "blog");
    cr_assert_eq(
        nx_router_add(r, "POST", pattern, h_two, NX_AUTH_REQUIRED, owner, err, sizeof(err)), NX_OK,
        "%s", err);
    memset(pattern, 'x', sizeof(pattern) - 1);
    memset(owner, 'y', sizeof(owner) - 1);
    const char *path = "/blog/hello-world/c/7";
    nx_match m;
    char allow[64];
    cr_assert_eq(nx_router_match(r, "POST", 4, path, strlen(path), &m, allow, sizeof(allow)),
                 NX_MATCH_FOUND);
    cr_expect_eq(m.handler, h_two);
    cr_expect_str_eq(m.route->method, "POST");
    cr_expect_str_eq(m.route->pattern, "/blog/{slug}/c/{n:int}");
    cr_expect_str_eq(m.route->owner, "blog");
    cr_expect_eq(m.route->flags, NX_AUTH_REQUIRED);
    cr_assert_eq(m.nparams, 2);
    cr_expect_str_eq(m.params[0].name, "slug");
    cr_expect_eq(m.params[0].value.len, strlen("hello-world"));
    cr_expect_eq(memcmp(m.params[0].value.ptr, "hello-world", m.params[0].value.len), 0);
    cr_expect_str_eq(m.params[1].name, "n");
    cr_expect_eq(m.params[1].value.len, 1);
    cr_expect_eq(m.params[1].value.ptr[0], '7');
    nx_router_free(r);
}

/* Two routes sharing a node ("/users/{id}" and "/users/{uid}/x") keep their own names, and
 * two methods on one node may name the parameter differently. */
Test(router, parameter_names_belong_to_routes)
{
    static const route_def defs[] = {
        {"GET", "/u/{id}"},
        {"PUT", "/u/{key}"},
        {"GET", "/u/{uid}/x"},
        {"GET", "/u/{uid2}/y/{z:int}"},
    };
    static const match_case cases[] = {
        FOUND("GET", "/u/1", "GET /u/{id}", "id=1"),
        FOUND("PUT", "/u/1", "PUT /u/{key}", "key=1"),
        FOUND("GET", "/u/1/x", "GET /u/{uid}/x", "uid=1"),
        FOUND("GET", "/u/1/y/2", "GET /u/{uid2}/y/{z:int}", "uid2=1|z=2"),
        FOUND("HEAD", "/u/1/y/2", "GET /u/{uid2}/y/{z:int}", "uid2=1|z=2"),
        NOT_FOUND("GET", "/u/1/y/q"),
    };
    nx_router *r = build(defs, NX_ARRAY_LEN(defs));
    run_cases(r, cases, NX_ARRAY_LEN(cases));
    nx_router_free(r);
}

/* "*" matches the whole rest, even empty, at the root too; a literal root route wins. */
Test(router, root_wildcard)
{
    static const route_def defs[] = {
        {"GET", "/*"},
        {"GET", "/health"},
    };
    static const match_case cases[] = {
        FOUND("GET", "/", "GET /*", "*="),
        FOUND("GET", "/health", "GET /health", ""),
        FOUND("GET", "/health/", "GET /*", "*=health/"),
        FOUND("GET", "/a/b", "GET /*", "*=a/b"),
        NO_METHOD("POST", "/a/b", "GET, HEAD, OPTIONS"),
        OPTIONS("OPTIONS", "/", "GET, HEAD, OPTIONS"),
    };
    nx_router *r = build(defs, NX_ARRAY_LEN(defs));
    run_cases(r, cases, NX_ARRAY_LEN(cases));
    nx_router_free(r);
}

/* NX_MAX_PARAMS parameters are accepted and all captured, in order. */
Test(router, max_params)
{
    char pattern[512] = "", path[256] = "";
    size_t pp = 0, sp = 0;
    for (int i = 0; i < NX_MAX_PARAMS; i++) {
        pp += (size_t)snprintf(pattern + pp, sizeof(pattern) - pp, "/{p%d}", i);
        sp += (size_t)snprintf(path + sp, sizeof(path) - sp, "/v%d", i);
    }
    nx_router *r = nx_router_new();
    char err[128] = "";
    cr_assert_eq(nx_router_add(r, "GET", pattern, h_one, 0, NULL, err, sizeof(err)), NX_OK, "%s",
                 err);
    nx_match m;
    char allow[64];
    cr_assert_eq(nx_router_match(r, "GET", 3, path, strlen(path), &m, allow, sizeof(allow)),
                 NX_MATCH_FOUND);
    cr_assert_eq(m.nparams, NX_MAX_PARAMS);
    for (int i = 0; i < NX_MAX_PARAMS; i++) {
        char name[16], val[16];
        snprintf(name, sizeof(name), "p%d", i);
        snprintf(val, sizeof(val), "v%d", i);
        cr_expect_str_eq(m.params[i].name, name);
        cr_expect_eq(m.params[i].value.len, strlen(val));
        cr_expect_eq(memcmp(m.params[i].value.ptr, val, strlen(val)), 0, "param %d", i);
    }
    /* one segment more than the pattern has: not found */
    strcat(path, "/extra");
    cr_expect_eq(nx_router_match(r, "GET", 3, path, strlen(path), &m, allow, sizeof(allow)),
                 NX_MATCH_NOT_FOUND);
    nx_router_free(r);
}

/* Many literal siblings: each is found, none shadows another of the same length. */
Test(router, many_literal_siblings)
{
    nx_router *r = nx_router_new();
    char err[128], pattern[64];
    for (int i = 0; i < 300; i++) {
        snprintf(pattern, sizeof(pattern), "/r/%d/%c", i, 'a' + i % 26);
        cr_assert_eq(nx_router_add(r, "GET", pattern, h_one, i, NULL, err, sizeof(err)), NX_OK,
                     "%s: %s", pattern, err);
    }
    for (int i = 0; i < 300; i++) {
        snprintf(pattern, sizeof(pattern), "/r/%d/%c", i, 'a' + i % 26);
        nx_match m;
        char allow[64];
        cr_assert_eq(
            nx_router_match(r, "GET", 3, pattern, strlen(pattern), &m, allow, sizeof(allow)),
            NX_MATCH_FOUND, "%s", pattern);
        cr_expect_eq(m.route->flags, i);
        cr_expect_str_eq(m.route->pattern, pattern);
    }
    nx_router_free(r);
}

/* ---- Allow ---------------------------------------------------------------------------- */

Test(router, allow_lists_each_method_once)
{
    static const route_def defs[] = {
        {"GET", "/x"}, {"HEAD", "/x"}, {"POST", "/x"}, {"PROPFIND", "/x"}, {"OPTIONS-X", "/x"},
    };
    static const match_case cases[] = {
        NO_METHOD("DELETE", "/x", "GET, HEAD, POST, PROPFIND, OPTIONS-X, OPTIONS"),
        OPTIONS("OPTIONS", "/x", "GET, HEAD, POST, PROPFIND, OPTIONS-X, OPTIONS"),
    };
    nx_router *r = build(defs, NX_ARRAY_LEN(defs));
    run_cases(r, cases, NX_ARRAY_LEN(cases));
    nx_router_free(r);
}

/*
 * "allow receives the methods the path supports": POST /x/y is answered (by /x/{id}), so a
 * 405 for DELETE /x/y must list POST, not only the methods of the literal node.
 */
Test(router, allow_includes_methods_of_fallback_routes)
{
    static const route_def defs[] = {
        {"GET", "/x/y"},
        {"POST", "/x/{id}"},
    };
    nx_router *r = build(defs, NX_ARRAY_LEN(defs));
    nx_match m;
    char allow[160];
    cr_assert_eq(nx_router_match(r, "POST", 4, "/x/y", 4, &m, allow, sizeof(allow)), NX_MATCH_FOUND,
                 "POST /x/y is served by POST /x/{id}");
    cr_assert_eq(nx_router_match(r, "DELETE", 6, "/x/y", 4, &m, allow, sizeof(allow)),
                 NX_MATCH_NO_METHOD);
    cr_expect(strstr(allow, "GET") != NULL, "Allow '%s' lacks GET", allow);
    cr_expect(strstr(allow, "POST") != NULL, "Allow '%s' lacks POST, which the path supports",
              allow);
    cr_assert_eq(nx_router_match(r, "OPTIONS", 7, "/x/y", 4, &m, allow, sizeof(allow)),
                 NX_MATCH_OPTIONS);
    cr_expect(strstr(allow, "POST") != NULL, "Allow '%s' lacks POST, which the path supports",
              allow);
    nx_router_free(r);
}

/* "NUL-terminated and truncated to allow_len": whatever the size, the result is a prefix of
 * the full list and never overruns the buffer. */
Test(router, allow_truncation_is_a_prefix)
{
    static const route_def defs[] = {
        {"GET", "/t"},
        {"PUT", "/t"},
    };
    nx_router *r = build(defs, NX_ARRAY_LEN(defs));
    const char *full = "GET, PUT, HEAD, OPTIONS";
    nx_match m;
    char allow[64];
    cr_assert_eq(nx_router_match(r, "DELETE", 6, "/t", 2, &m, allow, sizeof(allow)),
                 NX_MATCH_NO_METHOD);
    cr_assert_str_eq(allow, full);
    for (size_t len = 1; len <= strlen(full) + 1; len++) {
        memset(allow, '#', sizeof(allow));
        cr_assert_eq(nx_router_match(r, "DELETE", 6, "/t", 2, &m, allow, len), NX_MATCH_NO_METHOD);
        size_t got = strnlen(allow, len);
        cr_expect_lt(got, len, "allow_len %zu: not NUL-terminated within the buffer", len);
        cr_expect_eq(allow[len], '#', "allow_len %zu: wrote past the buffer", len);
        if (got < len)
            cr_expect_eq(strncmp(allow, full, got), 0,
                         "allow_len %zu: '%s' is not a prefix of '%s'", len, allow, full);
    }
    nx_router_free(r);
}

/* ---- nx_router_add errors ------------------------------------------------------------- */

typedef struct add_error {
    const char *method;
    const char *pattern;
    const char *err; /* exact message */
} add_error;

static void count_route(const nx_route_info *ri, void *arg)
{
    (*(size_t *)arg)++;
}

Test(router, add_errors)
{
    static const add_error cases[] = {
        {"get", "/x", "invalid method 'get'"},
        {"", "/x", "invalid method ''"},
        {"G ET", "/x", "invalid method 'G ET'"},
        {"GET/", "/x", "invalid method 'GET/'"},
        {"**", "/x", "invalid method '**'"},
        {NULL, "/x", "invalid method '(null)'"},
        {"GET", "x", "pattern must start with '/'"},
        {"GET", "", "pattern must start with '/'"},
        {"GET", NULL, "pattern must start with '/'"},
        {"GET", "/users/{id", "unclosed or empty parameter '{id'"},
        {"GET", "/users/{id/x", "unclosed or empty parameter '{id'"},
        {"GET", "/users/{}", "unclosed or empty parameter '{}'"},
        {"GET", "/users/{", "unclosed or empty parameter '{'"},
        {"GET", "/users/{id:float}", "unknown parameter type 'float' (expected int or str)"},
        {"GET", "/users/{id:}", "unknown parameter type '' (expected int or str)"},
        {"GET", "/users/{id:Int}", "unknown parameter type 'Int' (expected int or str)"},
        {"GET", "/x/{:int}", "parameter without a name"},
        {"GET", "/x/{a-b}", "parameter names are letters, digits and '_': 'a-b'"},
        {"GET", "/x/{...}", "parameter names are letters, digits and '_': '...'"},
        {"GET", "/x/{a:int...}", "parameter names are letters, digits and '_': 'a:int'"},
        {"GET", "/x/a{b}", "'{' and '}' must enclose a whole segment"},
        {"GET", "/x/a}", "'{' and '}' must enclose a whole segment"},
        {"GET", "/files/{path...}/x", "a wildcard must be the last segment"},
        {"GET", "/files/*/x", "a wildcard must be the last segment"},
        {"GET", "/*/", "a wildcard must be the last segment"},
    };
    nx_router *r = nx_router_new();
    for (size_t i = 0; i < NX_ARRAY_LEN(cases); i++) {
        char err[256] = "";
        int rc =
            nx_router_add(r, cases[i].method, cases[i].pattern, h_one, 0, "t", err, sizeof(err));
        cr_expect_eq(rc, NX_ERR, "row %zu: %s %s accepted", i, cases[i].method, cases[i].pattern);
        cr_expect_str_eq(err, cases[i].err, "row %zu: error '%s', expected '%s'", i, err,
                         cases[i].err);
    }
    char err[256] = "";
    cr_expect_eq(nx_router_add(r, "GET", "/x", NULL, 0, "t", err, sizeof(err)), NX_ERR);
    cr_expect_str_eq(err, "handler is NULL");
    /* nothing was registered, and the partial paths left no route behind */
    size_t n = 0;
    nx_router_each(r, count_route, &n);
    cr_expect_eq(n, 0, "%zu failed routes were registered", n);
    nx_match m;
    char allow[64];
    cr_expect_eq(nx_router_match(r, "GET", 3, "/users/5", 8, &m, allow, sizeof(allow)),
                 NX_MATCH_NOT_FOUND);
    cr_expect_eq(nx_router_match(r, "GET", 3, "/files/a/x", 10, &m, allow, sizeof(allow)),
                 NX_MATCH_NOT_FOUND);
    nx_router_free(r);
}

Test(router, too_many_params)
{
    char pattern[512] = "";
    size_t pp = 0;
    for (int i = 0; i <= NX_MAX_PARAMS; i++)
        pp += (size_t)snprintf(pattern + pp, sizeof(pattern) - pp, "/{p%d}", i);
    nx_router *r = nx_router_new();
    char err[128] = "";
    cr_expect_eq(nx_router_add(r, "GET", pattern, h_one, 0, NULL, err, sizeof(err)), NX_ERR);
    cr_expect_str_eq(err, "more than 16 parameters");
    /* a wildcard counts as a parameter */
    pp = 0;
    for (int i = 0; i < NX_MAX_PARAMS; i++)
        pp += (size_t)snprintf(pattern + pp, sizeof(pattern) - pp, "/{p%d}", i);
    snprintf(pattern + pp, sizeof(pattern) - pp, "/*");
    err[0] = '\0';
    cr_expect_eq(nx_router_add(r, "GET", pattern, h_one, 0, NULL, err, sizeof(err)), NX_ERR);
    cr_expect_str_eq(err, "more than 16 parameters");
    nx_router_free(r);
}

typedef struct clash_case {
    const char *m1, *p1, *owner1;
    const char *m2, *p2;
    const char *err; /* NULL: both accepted */
} clash_case;

Test(router, clashes_name_the_owner)
{
    static const clash_case cases[] = {
        {"GET", "/users/{id}", "blog", "GET", "/users/{uid}",
         "GET /users/{uid} clashes with GET /users/{id} of blog"},
        {"GET", "/users/{id}", "blog", "GET", "/users/{id:str}",
         "GET /users/{id:str} clashes with GET /users/{id} of blog"},
        {"GET", "/a", "shop", "GET", "/a", "GET /a clashes with GET /a of shop"},
        {"GET", "/a", NULL, "GET", "/a", "GET /a clashes with GET /a of nexus"},
        {"GET", "/s/*", "files", "GET", "/s/{rest...}",
         "GET /s/{rest...} clashes with GET /s/* of files"},
        {"*", "/any", "x", "*", "/any", "* /any clashes with * /any of x"},
        {"GET", "/n/{id:int}", "x", "GET", "/n/{k:int}",
         "GET /n/{k:int} clashes with GET /n/{id:int} of x"},
        /* different shapes or methods do not clash */
        {"GET", "/users/{id:int}", "x", "GET", "/users/{id}", NULL},
        {"GET", "/users/{id}", "x", "POST", "/users/{id}", NULL},
        {"GET", "/any", "x", "*", "/any", NULL},
        {"GET", "/t", "x", "GET", "/t/", NULL},
        {"GET", "/w/*", "x", "GET", "/w/{p}", NULL},
        {"GET", "/c/me", "x", "GET", "/c/{p}", NULL},
    };
    for (size_t i = 0; i < NX_ARRAY_LEN(cases); i++) {
        const clash_case *c = &cases[i];
        nx_router *r = nx_router_new();
        char err[256] = "";
        cr_assert_eq(nx_router_add(r, c->m1, c->p1, h_one, 0, c->owner1, err, sizeof(err)), NX_OK,
                     "row %zu: %s", i, err);
        int rc = nx_router_add(r, c->m2, c->p2, h_two, 0, "second", err, sizeof(err));
        if (c->err) {
            cr_expect_eq(rc, NX_ERR, "row %zu: %s %s accepted", i, c->m2, c->p2);
            cr_expect_str_eq(err, c->err, "row %zu: '%s'", i, err);
            /* the first route still answers */
            char path[64];
            snprintf(path, sizeof(path), "%s", c->p1);
            nx_match m;
            char allow[64];
            const char *meth = c->m1[0] == '*' ? "GET" : c->m1;
            if (!strchr(path, '{') && !strchr(path, '*')) {
                cr_expect_eq(nx_router_match(r, meth, strlen(meth), path, strlen(path), &m, allow,
                                             sizeof(allow)),
                             NX_MATCH_FOUND, "row %zu", i);
                cr_expect_eq(m.handler, h_one, "row %zu: the clashing route replaced it", i);
            }
        } else {
            cr_expect_eq(rc, NX_OK, "row %zu: %s %s refused: %s", i, c->m2, c->p2, err);
        }
        nx_router_free(r);
    }
}

/* ---- nx_router_each ------------------------------------------------------------------- */

typedef struct each_log {
    char lines[16][96];
    size_t n;
} each_log;

static void record_route(const nx_route_info *ri, void *arg)
{
    each_log *log = arg;
    cr_assert_lt(log->n, NX_ARRAY_LEN(log->lines));
    snprintf(log->lines[log->n++], sizeof(log->lines[0]), "%s %s %s %d", ri->method, ri->pattern,
             ri->owner, ri->flags);
}

Test(router, each_in_registration_order)
{
    nx_router *r = nx_router_new();
    char err[128];
    cr_assert_eq(nx_router_add(r, "GET", "/z", h_one, 0, "p1", err, sizeof(err)), NX_OK);
    cr_assert_eq(
        nx_router_add(r, "POST", "/a/{id:int}", h_one, NX_AUTH_REQUIRED, "p2", err, sizeof(err)),
        NX_OK);
    cr_assert_eq(nx_router_add(r, "GET", "/z", h_one, 0, "p3", err, sizeof(err)), NX_ERR);
    cr_assert_eq(nx_router_add(r, "GET", "/bad/{x", h_one, 0, "p3", err, sizeof(err)), NX_ERR);
    cr_assert_eq(nx_router_add(r, "*", "/m/*", h_one, 0, NULL, err, sizeof(err)), NX_OK);
    cr_assert_eq(nx_router_add(r, "GET", "/", h_one, 0, "p4", err, sizeof(err)), NX_OK);
    cr_assert_eq(nx_router_add(r, "DELETE", "/z", h_one, 0, "p1", err, sizeof(err)), NX_OK);
    each_log log = {.n = 0};
    nx_router_each(r, record_route, &log);
    static const char *const want[] = {
        "GET /z p1 0", "POST /a/{id:int} p2 1", "* /m/* nexus 0", "GET / p4 0", "DELETE /z p1 0",
    };
    cr_assert_eq(log.n, NX_ARRAY_LEN(want));
    for (size_t i = 0; i < NX_ARRAY_LEN(want); i++)
        cr_expect_str_eq(log.lines[i], want[i], "route %zu", i);
    nx_router_free(r);

    nx_router *empty = nx_router_new();
    log.n = 0;
    nx_router_each(empty, record_route, &log);
    cr_expect_eq(log.n, 0);
    nx_router_free(empty);
}
