/*
 * hello - the TechEmpower "plaintext" and "json" shapes, and the smallest complete plugin.
 *
 *   GET /plaintext   200 text/plain        Hello, World!
 *   GET /json        200 application/json  {"message":"Hello, World!"}
 */
#include <jansson.h>
#include <nexus/nexus.h>

static void plaintext(nx_req *req, nx_res *res)
{
    static const char body[] = "Hello, World!";
    /* A literal outlives the request: no copy needed. */
    nx_res_body_static(res, "text/plain", body, sizeof(body) - 1);
}

static void json(nx_req *req, nx_res *res)
{
    /* The benchmark's rules ask for the object to be serialized per request. */
    nx_json(res, 200, json_pack("{s:s}", "message", "Hello, World!"));
}

static int hello_init(nx_plugin *p)
{
    if (nx_route(p, "GET", "/plaintext", plaintext, NX_ROUTE_DEFAULT) != NX_OK)
        return -1;
    return nx_route(p, "GET", "/json", json, NX_ROUTE_DEFAULT) != NX_OK ? -1 : 0;
}

NEXUS_PLUGIN("hello", "1.0.0", hello_init, NULL);
