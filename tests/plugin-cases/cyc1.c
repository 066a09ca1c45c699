/* cyc1: half of a dependency cycle */
#include <nexus/nexus.h>

static void handler(nx_req *req, nx_res *res)
{
    (void)req;
    nx_text(res, 200, "cyc1");
}

static int init(nx_plugin *p)
{
    if (nx_route(p, "GET", "/case/cyc1", handler, NX_ROUTE_DEFAULT) != NX_OK)
        return -1;
    return 0;
}
static const char *const deps[] = {"cyc2", NULL};
NEXUS_PLUGIN_DESCRIPTOR = {NX_PLUGIN_ABI, .name = "cyc1", .version = "1.0.0", .init = init,
                           .depends = deps};
