/*
 * mw: middleware order and short-circuit. Every hook records itself in a response header,
 * so a test reads the order from X-Before and X-After. "gate" answers 403 by itself when
 * the request carries X-Block.
 */
#include <nexus/nexus.h>

static void mark(nx_res *res, const char *header, const char *name)
{
    nx_res_header(res, header, name);
}

static bool gate_before(nx_req *req, nx_res *res)
{
    mark(res, "X-Before", "gate");
    if (nx_req_header(req, "X-Block")) {
        nx_problem(res, 403, "blocked by the gate middleware");
        return false;
    }
    return true;
}

static void gate_after(nx_req *req, nx_res *res)
{
    mark(res, "X-After", "gate");
}

static bool outer_before(nx_req *req, nx_res *res)
{
    mark(res, "X-Before", "outer");
    return true;
}

static void outer_after(nx_req *req, nx_res *res)
{
    mark(res, "X-After", "outer");
}

static bool outer2_before(nx_req *req, nx_res *res)
{
    mark(res, "X-Before", "outer2");
    return true;
}

static void outer2_after(nx_req *req, nx_res *res)
{
    mark(res, "X-After", "outer2");
}

static bool inner_before(nx_req *req, nx_res *res)
{
    mark(res, "X-Before", "inner");
    return true;
}

static void inner_after(nx_req *req, nx_res *res)
{
    mark(res, "X-After", "inner");
}

static int init(nx_plugin *p)
{
    /* Registered out of priority order on purpose. */
    if (nx_middleware(p, "inner", 20, inner_before, inner_after) != NX_OK ||
        nx_middleware(p, "outer", 10, outer_before, outer_after) != NX_OK ||
        nx_middleware(p, "outer2", 10, outer2_before, outer2_after) != NX_OK ||
        nx_middleware(p, "gate", 5, gate_before, gate_after) != NX_OK)
        return -1;
    return 0;
}

NEXUS_PLUGIN("mw", "1.0.0", init, NULL);
