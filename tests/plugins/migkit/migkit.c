/*
 * migkit - a plugin used only by the migration and backup tests (tests/integration/
 * test_migrate.py, test_backup.py).
 *
 * It ships migrations (migkit/migrations/ beside migkit.so) that create the tables its
 * routes use, so a server started with database.auto_migrate serves them at once:
 *
 *   POST /migkit/batches?rows=N   inserts N rows (1..1000) sharing a new random batch number,
 *                                 in one transaction -> 201 {"batch": B, "rows": N}
 *   GET  /migkit/summary          {"rows": R, "batches": B, "torn": T}: T counts the batches
 *                                 whose rows are not all there (a copy taken half-way
 *                                 through a transaction would have some)
 *
 * The tests also copy migkit.so into folders of their own, beside migrations they write.
 */
#include <nexus/nexus.h>

#include <jansson.h>
#include <stdlib.h>
#include <sys/random.h>

#define ROWS_MAX 1000

/* POST /migkit/batches?rows=N */
static void add_batch(nx_req *req, nx_res *res)
{
    const char *q = nx_req_query(req, "rows");
    char *end = NULL;
    long rows = q ? strtol(q, &end, 10) : 1;
    if (q && (!*q || *end || rows < 1 || rows > ROWS_MAX)) {
        nx_problem(res, 422, "rows must be an integer in 1..%d", ROWS_MAX);
        return;
    }
    /* A random batch number: concurrent requests need no lock to tell theirs apart. */
    uint64_t batch = 0;
    if (getrandom(&batch, sizeof(batch), 0) != (ssize_t)sizeof(batch)) {
        nx_problem(res, 500, "getrandom failed");
        return;
    }
    batch >>= 2; /* a positive BIGINT */
    if (nx_db_begin(req) != NX_OK) {
        nx_db_problem(req, res);
        return;
    }
    for (long i = 0; i < rows; i++) {
        if (nx_db_exec(req, "INSERT INTO migkit_items (batch, seq, note) VALUES ($1, $2, $3)",
                       NX_DB_ARGS(NX_DB_I64(batch), NX_DB_I64(i), NX_DB_I64(rows))) != NX_OK) {
            nx_db_problem(req, res);
            return;
        }
    }
    if (nx_db_commit(req) != NX_OK) {
        nx_db_problem(req, res);
        return;
    }
    nx_json(res, 201, json_pack("{sIsI}", "batch", (json_int_t)batch, "rows", (json_int_t)rows));
}

/* GET /migkit/summary: every row records how many rows its batch has (note). */
static void summary(nx_req *req, nx_res *res)
{
    nx_db_result *r = nx_db_query(
        req,
        "SELECT (SELECT COUNT(*) FROM migkit_items), (SELECT COUNT(DISTINCT batch) FROM "
        "migkit_items), (SELECT COUNT(*) FROM (SELECT batch FROM migkit_items GROUP BY batch "
        "HAVING COUNT(*) <> MAX(note)) AS t)",
        NULL, 0);
    if (!r) {
        nx_db_problem(req, res);
        return;
    }
    nx_json(res, 200,
            json_pack("{sIsIsI}", "rows", (json_int_t)nx_db_i64(r, 0, 0), "batches",
                      (json_int_t)nx_db_i64(r, 0, 1), "torn", (json_int_t)nx_db_i64(r, 0, 2)));
}

static int init(nx_plugin *p)
{
    if (nx_route(p, "POST", "/migkit/batches", add_batch, NX_ROUTE_DEFAULT) != NX_OK ||
        nx_route(p, "GET", "/migkit/summary", summary, NX_ROUTE_DEFAULT) != NX_OK)
        return -1;
    return 0;
}

NEXUS_PLUGIN_DESCRIPTOR = {NX_PLUGIN_ABI, .name = "migkit", .version = "1.0.0", .init = init};
