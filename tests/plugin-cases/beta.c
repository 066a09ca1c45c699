/* beta: no dependencies */
#include <nexus/nexus.h>

static void handler(nx_req *req, nx_res *res)
{
    (void)req;
    nx_text(res, 200, "beta");
}

static int init(nx_plugin *p)
{
    if (nx_route(p, "GET", "/case/beta", handler, NX_ROUTE_DEFAULT) != NX_OK)
        return -1;
    return 0;
}
NEXUS_PLUGIN("beta", "1.0.0", init, NULL);
