/*
 * hello - the TechEmpower benchmark shapes (https://github.com/TechEmpower/FrameworkBenchmarks,
 * rounds 20 and later), from the smallest handler to pipelined database work.
 *
 *   GET /plaintext           200 text/plain        Hello, World!
 *   GET /json                200 application/json  {"message":"Hello, World!"}
 *   GET /db                  one random World row: {"id":N,"randomNumber":M}
 *   GET /queries?queries=N   N random World rows, [{"id":..,"randomNumber":..}, ...]
 *   GET /fortunes            the Fortune table and one fortune added here, sorted by
 *                            message, as an HTML table (text/html; charset=utf-8)
 *   GET /cached-queries?count=N  N random World rows through the server's cache
 *   GET /updates?queries=N   N random World rows, each given a new randomNumber, written
 *                            back and returned
 *
 * N is clamped to 1..500; a missing or non-integer value counts as 1, as the rules say.
 * The tables World (10000 rows) and Fortune (12 rows) are created and filled by this
 * plugin's migrations (migrations/0001_world.*.sql, 0002_fortune.*.sql).
 *
 * Each row is read by a statement of its own, as the rules require, but the N statements
 * of a request go out together in one nx_db_batch: PostgreSQL pipelines them, one round
 * trip for all. Identifiers are written unquoted (World, randomNumber): PostgreSQL folds
 * them to lower case, MySQL and SQLite keep them, and every statement here names them the
 * same way. The JSON is built from the getters, so its keys are "id" and "randomNumber"
 * whatever case the backend gives the column names.
 */
#include <nexus/nexus.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define WORLD_ROWS 10000
#define QUERIES_MAX 500

static const char world_sql[] = "SELECT id, randomNumber FROM World WHERE id = $1";
static const char update_sql[] = "UPDATE World SET randomNumber = $1 WHERE id = $2";
static const char fortune_sql[] = "SELECT id, message FROM Fortune";

/* ---- random numbers -------------------------------------------------------------------- */

/*
 * xorshift64*: a few instructions per number, and statistically good enough to pick rows.
 * Each worker seeds its own state from getrandom in its start hook, so that workers forked
 * from one master do not all draw the same sequence.
 */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dULL;
}

/* 1..WORLD_ROWS: an id of World, or a randomNumber. The modulo bias is below 1e-15. */
static int64_t random_world(void)
{
    return (int64_t)(rng_next() % WORLD_ROWS) + 1;
}

static int seed_worker(nx_plugin *p)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40);
    }
    rng_state = seed ? seed : 0x9e3779b97f4a7c15ULL; /* xorshift never leaves 0 */
    return 0;
}

/* ---- plaintext and json ---------------------------------------------------------------- */

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

/* ---- the World table ------------------------------------------------------------------- */

static json_t *world_json(int64_t id, int64_t number)
{
    return json_pack("{s:I, s:I}", "id", (json_int_t)id, "randomNumber", (json_int_t)number);
}

/* ?queries=N clamped to 1..500; missing, empty or not an integer counts as 1. */
static size_t query_count(nx_req *req)
{
    const char *s = nx_req_query(req, "queries");
    if (!s || !*s)
        return 1;
    char *end;
    long long n = strtoll(s, &end, 10); /* out of range: LLONG_MIN / LLONG_MAX, clamped */
    if (*end)
        return 1;
    return n < 1 ? 1 : n > QUERIES_MAX ? QUERIES_MAX : (size_t)n;
}

/*
 * Reads n random World rows, one statement each, sent as one batch. Returns the
 * statements (in the request's arena) with their results, or NULL after answering the
 * database's error. A row that is missing means the table was not seeded: 500.
 */
static nx_db_stmt *read_worlds(nx_req *req, nx_res *res, size_t n)
{
    nx_arena *a = nx_req_arena(req);
    nx_db_value *ids = nx_arena_alloc(a, n * sizeof(*ids));
    nx_db_stmt *reads = nx_arena_calloc(a, n, sizeof(*reads));
    for (size_t i = 0; i < n; i++) {
        ids[i] = NX_DB_I64(random_world());
        reads[i] = (nx_db_stmt){.sql = world_sql, .params = &ids[i], .nparams = 1};
    }
    if (nx_db_batch(req, reads, n) != NX_OK) {
        nx_db_problem(req, res);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (nx_db_rows(reads[i].result) == 0) {
            nx_problem(res, 500, "World has no row %lld: are hello's migrations applied?",
                       (long long)ids[i].v.i);
            return NULL;
        }
    }
    return reads;
}

/* GET /db */
static void db(nx_req *req, nx_res *res)
{
    int64_t id = random_world();
    nx_db_result *r = nx_db_query(req, world_sql, NX_DB_ARGS(NX_DB_I64(id)));
    if (!r)
        nx_db_problem(req, res);
    else if (nx_db_rows(r) == 0)
        nx_problem(res, 500, "World has no row %lld: are hello's migrations applied?",
                   (long long)id);
    else
        nx_json(res, 200, world_json(nx_db_i64(r, 0, 0), nx_db_i64(r, 0, 1)));
}

/* GET /queries?queries=N */
static void queries(nx_req *req, nx_res *res)
{
    size_t n = query_count(req);
    nx_db_stmt *w = read_worlds(req, res, n);
    if (!w)
        return;
    json_t *out = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(
            out, world_json(nx_db_i64(w[i].result, 0, 0), nx_db_i64(w[i].result, 0, 1)));
    nx_json(res, 200, out);
}

/*
 * GET /cached-queries?count=N: N random World rows from the server's cache (TechEmpower's
 * caching test). The rows missing from the cache are read in one batch and cached for
 * an hour; the answer is the same as /queries'. As in the benchmark, whose cached test
 * reads a table nobody writes, /updates does not refresh these entries.
 */
static void cached_queries(nx_req *req, nx_res *res)
{
    nx_arena *a = nx_req_arena(req);
    const char *s = nx_req_query(req, "count");
    char *end = NULL;
    long long want = s && *s ? strtoll(s, &end, 10) : 1;
    size_t n = end && *end ? 1 : want < 1 ? 1 : want > QUERIES_MAX ? QUERIES_MAX : (size_t)want;
    int64_t *ids = nx_arena_alloc(a, n * sizeof(*ids));
    int64_t *numbers = nx_arena_alloc(a, n * sizeof(*numbers));
    nx_db_stmt *miss = nx_arena_alloc(a, n * sizeof(*miss));
    nx_db_value *args = nx_arena_alloc(a, n * sizeof(*args));
    size_t *miss_at = nx_arena_alloc(a, n * sizeof(*miss_at));
    size_t nmiss = 0;
    const char **keys = nx_arena_alloc(a, n * sizeof(*keys));
    nx_str *cached = nx_arena_alloc(a, n * sizeof(*cached));
    for (size_t i = 0; i < n; i++) {
        ids[i] = random_world();
        keys[i] = nx_arena_printf(a, "world:%lld", (long long)ids[i]);
    }
    nx_cache_get_many(req, keys, n, cached); /* one round trip with Redis */
    for (size_t i = 0; i < n; i++) {
        if (cached[i].ptr) {
            numbers[i] = strtoll(cached[i].ptr, NULL, 10);
            continue;
        }
        args[nmiss] = NX_DB_I64(ids[i]);
        miss[nmiss] = (nx_db_stmt){.sql = world_sql, .params = &args[nmiss], .nparams = 1};
        miss_at[nmiss++] = i;
    }
    if (nmiss && nx_db_batch(req, miss, nmiss) != NX_OK) {
        nx_db_problem(req, res);
        return;
    }
    for (size_t k = 0; k < nmiss; k++) {
        size_t i = miss_at[k];
        numbers[i] = nx_db_i64(miss[k].result, 0, 1);
        char text[24];
        int len = snprintf(text, sizeof(text), "%lld", (long long)numbers[i]);
        nx_cache_set(req, keys[i], text, (size_t)len, 3600000);
    }
    json_t *out = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(out, world_json(ids[i], numbers[i]));
    nx_json(res, 200, out);
}

/* One row of /updates: its place in the answer, its id and its new number. */
typedef struct world_update {
    size_t index;
    int64_t id, number;
} world_update;

/* By id, then by place: concurrent requests lock rows in the same order (no deadlock),
 * and of two updates of one row the later one in the answer is the one stored. */
static int by_id(const void *a, const void *b)
{
    const world_update *x = a, *y = b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/*
 * Runs the n UPDATE statements of /updates. PostgreSQL runs a batch as one implicit
 * transaction, in one round trip. The other backends run it statement by statement: a
 * transaction around it makes N commits one (and keeps the rows locked in id order until
 * the last is written). Answers the database's error and returns false on failure.
 */
static bool write_worlds(nx_req *req, nx_res *res, nx_db_stmt *writes, size_t n)
{
    bool tx = strcmp(nx_db_backend(), "postgresql") != 0;
    if (tx && nx_db_begin(req) != NX_OK)
        goto fail;
    if (nx_db_batch(req, writes, n) != NX_OK) {
        nx_db_problem(req, res); /* first: a rollback resets the request's error */
        if (tx)
            nx_db_rollback(req);
        return false;
    }
    if (tx && nx_db_commit(req) != NX_OK) /* a failed COMMIT ends the transaction too */
        goto fail;
    return true;
fail:
    nx_db_problem(req, res);
    return false;
}

/* GET /updates?queries=N */
static void updates(nx_req *req, nx_res *res)
{
    size_t n = query_count(req);
    nx_db_stmt *w = read_worlds(req, res, n);
    if (!w)
        return;
    nx_arena *a = nx_req_arena(req);
    world_update *u = nx_arena_alloc(a, n * sizeof(*u));
    for (size_t i = 0; i < n; i++) {
        int64_t old = nx_db_i64(w[i].result, 0, 1), number;
        do /* a new number, so that every update changes its row */
            number = random_world();
        while (number == old);
        u[i] = (world_update){.index = i, .id = nx_db_i64(w[i].result, 0, 0), .number = number};
    }
    json_t *out = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(out, world_json(u[i].id, u[i].number));

    qsort(u, n, sizeof(*u), by_id);
    nx_db_value *args = nx_arena_alloc(a, 2 * n * sizeof(*args));
    nx_db_stmt *writes = nx_arena_calloc(a, n, sizeof(*writes));
    for (size_t i = 0; i < n; i++) {
        args[2 * i] = NX_DB_I64(u[i].number);
        args[2 * i + 1] = NX_DB_I64(u[i].id);
        writes[i] = (nx_db_stmt){.sql = update_sql, .params = &args[2 * i], .nparams = 2};
    }
    if (!write_worlds(req, res, writes, n)) {
        json_decref(out);
        return;
    }
    nx_json(res, 200, out);
}

/* ---- the Fortune table ----------------------------------------------------------------- */

typedef struct fortune {
    int64_t id;
    nx_str message;
} fortune;

/* By message, bytewise: for UTF-8 text that is code point order. */
static int by_message(const void *a, const void *b)
{
    const nx_str *x = &((const fortune *)a)->message, *y = &((const fortune *)b)->message;
    int c = memcmp(x->ptr, y->ptr, x->len < y->len ? x->len : y->len);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Appends s escaped for HTML text and attribute values at o; returns the new end. */
static char *html_escape(char *o, nx_str s)
{
    for (size_t i = 0; i < s.len; i++) {
        const char *e;
        switch (s.ptr[i]) {
        case '&': e = "&amp;"; break;
        case '<': e = "&lt;"; break;
        case '>': e = "&gt;"; break;
        case '"': e = "&quot;"; break;
        case '\'': e = "&#39;"; break;
        default: *o++ = s.ptr[i]; continue;
        }
        size_t n = strlen(e);
        memcpy(o, e, n);
        o += n;
    }
    return o;
}

static char *append(char *o, const char *s)
{
    size_t n = strlen(s);
    memcpy(o, s, n);
    return o + n;
}

/* GET /fortunes */
static void fortunes(nx_req *req, nx_res *res)
{
    static const char head[] = "<!DOCTYPE html><html><head><title>Fortunes</title></head>"
                               "<body><table><tr><th>id</th><th>message</th></tr>";
    static const char tail[] = "</table></body></html>";
    static const char extra[] = "Additional fortune added at request time.";

    nx_db_result *r = nx_db_query(req, fortune_sql, NULL, 0);
    if (!r) {
        nx_db_problem(req, res);
        return;
    }
    nx_arena *a = nx_req_arena(req);
    size_t n = nx_db_rows(r) + 1;
    fortune *f = nx_arena_alloc(a, n * sizeof(*f));
    /* The longest a row can be: its markup, 20 digits, each byte escaped to 6. */
    size_t size = sizeof(head) + sizeof(tail);
    for (size_t i = 0; i + 1 < n; i++) {
        f[i] = (fortune){.id = nx_db_i64(r, i, 0), .message = nx_db_blob(r, i, 1)};
        size += 64 + 6 * f[i].message.len;
    }
    f[n - 1] = (fortune){.id = 0, .message = {extra, sizeof(extra) - 1}};
    size += 64 + 6 * f[n - 1].message.len;
    qsort(f, n, sizeof(*f), by_message);

    char *body = nx_arena_alloc(a, size), *o = body;
    o = append(o, head);
    for (size_t i = 0; i < n; i++) {
        o = append(o, "<tr><td>");
        o = append(o, nx_arena_printf(a, "%lld", (long long)f[i].id));
        o = append(o, "</td><td>");
        o = html_escape(o, f[i].message);
        o = append(o, "</td></tr>");
    }
    o = append(o, tail);
    /* The body lives in the arena, which outlives the response. */
    nx_res_body_static(res, "text/html; charset=utf-8", body, (size_t)(o - body));
}

/* ---- registration ---------------------------------------------------------------------- */

static int hello_init(nx_plugin *p)
{
    static const struct {
        const char *pattern;
        nx_handler_fn fn;
    } routes[] = {
        {"/plaintext", plaintext},
        {"/json", json},
        {"/db", db},
        {"/queries", queries},
        {"/fortunes", fortunes},
        {"/updates", updates},
        {"/cached-queries", cached_queries},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (nx_route(p, "GET", routes[i].pattern, routes[i].fn, NX_ROUTE_DEFAULT) != NX_OK)
            return -1;
    return nx_on_worker(p, seed_worker, NULL) != NX_OK ? -1 : 0;
}

NEXUS_PLUGIN("hello", "1.1.0", hello_init, NULL);
