/*
 * health.c - the probe endpoints.
 */
#include "observe/health.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

typedef struct check {
    const void *owner;
    char *name;
    nx_ready_fn fn;
} check;

static check *checks;
static size_t nchecks;
static const volatile int *stop_flag;
static bool draining;

void nx_health_add_check(const void *owner, const char *name, nx_ready_fn fn)
{
    checks = nx_xrealloc(checks, (nchecks + 1) * sizeof(*checks));
    checks[nchecks].owner = owner;
    checks[nchecks].name = nx_xstrdup(name);
    checks[nchecks].fn = fn;
    nchecks++;
}

void nx_health_remove_owner(const void *owner)
{
    size_t kept = 0;
    for (size_t i = 0; i < nchecks; i++) {
        if (owner && checks[i].owner == owner)
            free(checks[i].name);
        else
            checks[kept++] = checks[i];
    }
    nchecks = kept;
}

void nx_health_watch_stop_flag(const volatile int *flag)
{
    stop_flag = flag;
}

void nx_health_set_draining(bool d)
{
    draining = d;
}

static void health(nx_req *req, nx_res *res)
{
    static const char body[] = "{\"status\":\"ok\"}";
    nx_res_status(res, 200);
    nx_res_body_static(res, "application/json", body, sizeof(body) - 1);
}

static void ready(nx_req *req, nx_res *res)
{
    if ((stop_flag && *stop_flag) || draining) {
        nx_problem(res, 503, "the server is shutting down");
        nx_res_header(res, "Retry-After", "5");
        return;
    }
    json_t *ok = json_object();
    for (size_t i = 0; i < nchecks; i++) {
        const char *why = NULL;
        if (!checks[i].fn(&why)) {
            json_decref(ok);
            nx_problem(res, 503, "readiness check '%s' failed: %s", checks[i].name,
                       why ? why : "not ready");
            nx_res_header(res, "Retry-After", "5");
            return;
        }
        json_object_set_new(ok, checks[i].name, json_string("ok"));
    }
    nx_json(res, 200, json_pack("{s:s, s:o}", "status", "ready", "checks", ok));
}

int nx_health_routes(nx_router *r, char *err, size_t errlen)
{
    if (nx_router_add(r, "GET", "/health", health, 0, "nexus", err, errlen) != NX_OK)
        return NX_ERR;
    return nx_router_add(r, "GET", "/ready", ready, 0, "nexus", err, errlen);
}
