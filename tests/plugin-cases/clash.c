/* clash: claims GET /plaintext, which hello owns */
#include <nexus/nexus.h>

static void handler(nx_req *req, nx_res *res)
{
    (void)req;
    nx_text(res, 200, "clash");
}

static int init(nx_plugin *p)
{
    if (nx_route(p, "GET", "/plaintext", handler, NX_ROUTE_DEFAULT) != NX_OK)
        return -1;
    return 0;
}
NEXUS_PLUGIN("clash", "1.0.0", init, NULL);
