/* dependent: depends on badinit, so it goes when badinit fails */
#include <nexus/nexus.h>

static void handler(nx_req *req, nx_res *res)
{
    (void)req;
    nx_text(res, 200, "dependent");
}

static int init(nx_plugin *p)
{
    if (nx_route(p, "GET", "/case/dependent", handler, NX_ROUTE_DEFAULT) != NX_OK)
        return -1;
    return 0;
}
static const char *const deps[] = {"badinit", NULL};
NEXUS_PLUGIN_DESCRIPTOR = {NX_PLUGIN_ABI, .name = "dependent", .version = "1.0.0", .init = init,
                           .depends = deps};
