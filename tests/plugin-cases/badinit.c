/* badinit: registers a route and a readiness check, then fails */
#include <nexus/nexus.h>

static void handler(nx_req *req, nx_res *res)
{
    (void)req;
    nx_text(res, 200, "badinit");
}

static bool never_ready(const char **why)
{
    *why = "this check must have been removed with its plugin";
    return false;
}

static int init(nx_plugin *p)
{
    nx_ready_check(p, "badinit", never_ready);
    if (nx_route(p, "GET", "/case/badinit", handler, NX_ROUTE_DEFAULT) != NX_OK)
        return -1;
    return -1;
}
NEXUS_PLUGIN("badinit", "1.0.0", init, NULL);
