/* gamma: depends on a plugin that does not exist */
#include <nexus/nexus.h>

static void handler(nx_req *req, nx_res *res)
{
    (void)req;
    nx_text(res, 200, "gamma");
}

static int init(nx_plugin *p)
{
    if (nx_route(p, "GET", "/case/gamma", handler, NX_ROUTE_DEFAULT) != NX_OK)
        return -1;
    return 0;
}
static const char *const deps[] = {"missing", NULL};
NEXUS_PLUGIN_DESCRIPTOR = {NX_PLUGIN_ABI, .name = "gamma", .version = "1.0.0", .init = init,
                           .depends = deps};
