/* oldabi: built against another plugin ABI */
#include <nexus/nexus.h>

static void handler(nx_req *req, nx_res *res)
{
    (void)req;
    nx_text(res, 200, "oldabi");
}

static int init(nx_plugin *p)
{
    if (nx_route(p, "GET", "/case/oldabi", handler, NX_ROUTE_DEFAULT) != NX_OK)
        return -1;
    return 0;
}
NEXUS_PLUGIN_DESCRIPTOR = {
    .abi_version = NX_ABI_VERSION + 41, .name = "oldabi", .version = "1.0.0", .init = init};
