/*
 * dbkit - a plugin used only by the database integration tests (tests/integration/test_db_*).
 *
 * It exposes <nexus/db.h> to a black-box client: the SQL and its parameters come from the
 * test in a JSON body, so one server can exercise every backend behaviour (types, errors,
 * transactions, batches, timeouts, the pool) without a plugin per case. It is test-only
 * by design: a real plugin never runs SQL that a client wrote.
 *
 * Parameters map from JSON types: null -> NULL, true/false -> BOOL, integer -> INT,
 * real -> FLOAT, string -> TEXT (may hold \u0000), {"blob_b64": "..."} -> BLOB,
 * {"text_b64": "..."} -> TEXT of arbitrary bytes, {"cstr": "..."|null} -> NX_DB_STR.
 *
 * A failed call answers nx_db_problem, with the nx_db_error fields in headers the tests
 * read: X-Db-Error (kind), X-Db-Sqlstate, X-Db-Code, X-Db-Constraint, X-Db-Message.
 */
#include <nexus/nexus.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kit_b64.h"

/* Longest sleep step, far above any timeout the tests configure. */
#define SLEEP_MAX_MS 600000

static const char *kind_name(nx_db_error_kind k)
{
    switch (k) {
    case NX_DB_OK: return "ok";
    case NX_DB_UNAVAILABLE: return "unavailable";
    case NX_DB_TIMEOUT: return "timeout";
    case NX_DB_CANCELED: return "canceled";
    case NX_DB_CONSTRAINT: return "constraint";
    case NX_DB_CONFLICT: return "conflict";
    case NX_DB_QUERY: return "query";
    case NX_DB_MISUSE: return "misuse";
    }
    return "?";
}

static const char *type_name(nx_db_type t)
{
    switch (t) {
    case NX_DB_NULL: return "null";
    case NX_DB_INT: return "int";
    case NX_DB_FLOAT: return "float";
    case NX_DB_TEXT: return "text";
    case NX_DB_BLOB: return "blob";
    case NX_DB_BOOL: return "bool";
    }
    return "?";
}

/* ---- base64 ---------------------------------------------------------------------------- */

static int b64_digit(char c)
{
    const char *p = c ? strchr(b64_tab, c) : NULL;
    return p ? (int)(p - b64_tab) : -1;
}

/* Decodes padded base64 into the arena; false when malformed. */
static bool b64_decode(nx_arena *a, const char *s, size_t n, char **out, size_t *outlen)
{
    if (n % 4)
        return false;
    char *buf = nx_arena_alloc(a, n / 4 * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int d[4];
        for (int k = 0; k < 4; k++) {
            d[k] = s[i + k] == '=' && i + 4 == n && k >= 2 ? 0 : b64_digit(s[i + k]);
            if (d[k] < 0)
                return false;
        }
        unsigned v =
            (unsigned)d[0] << 18 | (unsigned)d[1] << 12 | (unsigned)d[2] << 6 | (unsigned)d[3];
        buf[o++] = (char)(v >> 16);
        if (s[i + 2] != '=')
            buf[o++] = (char)(v >> 8 & 0xff);
        if (s[i + 3] != '=')
            buf[o++] = (char)(v & 0xff);
    }
    *out = buf;
    *outlen = o;
    return true;
}

/* ---- requests and answers ---------------------------------------------------------------- */

static void decref(void *arg)
{
    json_decref(arg);
}

/* The request body as JSON (released with the request), or NULL after answering 400. */
static json_t *body_json(nx_req *req, nx_res *res)
{
    nx_str body = nx_req_body(req);
    json_error_t jerr;
    json_t *j = json_loadb(body.ptr, body.len, JSON_ALLOW_NUL, &jerr);
    if (!j) {
        nx_problem(res, 400, "body is not JSON: %s", jerr.text);
        return NULL;
    }
    nx_arena_on_cleanup(nx_req_arena(req), decref, j);
    return j;
}

static bool param_of(nx_arena *a, json_t *j, nx_db_value *v)
{
    switch (json_typeof(j)) {
    case JSON_NULL: *v = NX_DB_NULLV; return true;
    case JSON_TRUE: *v = NX_DB_BOOLV(true); return true;
    case JSON_FALSE: *v = NX_DB_BOOLV(false); return true;
    case JSON_INTEGER: *v = NX_DB_I64(json_integer_value(j)); return true;
    case JSON_REAL: *v = NX_DB_F64(json_real_value(j)); return true;
    case JSON_STRING:
        *v = NX_DB_TEXTN(nx_arena_strndup(a, json_string_value(j), json_string_length(j)),
                         json_string_length(j));
        return true;
    case JSON_OBJECT: {
        json_t *cstr = json_object_get(j, "cstr");
        if (cstr) {
            *v = NX_DB_STR(json_is_string(cstr) ? nx_arena_strdup(a, json_string_value(cstr))
                                                : NULL);
            return true;
        }
        json_t *b = json_object_get(j, "blob_b64");
        json_t *t = json_object_get(j, "text_b64");
        json_t *s = b ? b : t;
        char *p;
        size_t n;
        if (!json_is_string(s) ||
            !b64_decode(a, json_string_value(s), json_string_length(s), &p, &n))
            return false;
        *v = b ? NX_DB_BLOBN(p, n) : NX_DB_TEXTN(p, n);
        return true;
    }
    default: return false;
    }
}

/* The "params" array of obj as values in the arena; false (after answering 400) if bad. */
static bool params_of(nx_req *req, nx_res *res, json_t *obj, const nx_db_value **out, size_t *n)
{
    json_t *arr = json_object_get(obj, "params");
    *out = NULL;
    *n = 0;
    if (!arr || json_is_null(arr))
        return true;
    if (!json_is_array(arr)) {
        nx_problem(res, 400, "params must be an array");
        return false;
    }
    size_t count = json_array_size(arr);
    nx_db_value *vals = nx_arena_calloc(nx_req_arena(req), count ? count : 1, sizeof(*vals));
    for (size_t i = 0; i < count; i++) {
        if (!param_of(nx_req_arena(req), json_array_get(arr, i), &vals[i])) {
            nx_problem(res, 400, "params[%zu] has no database type", i);
            return false;
        }
    }
    *out = vals;
    *n = count;
    return true;
}

static const char *sql_of(nx_res *res, json_t *obj)
{
    const char *sql = json_string_value(json_object_get(obj, "sql"));
    if (!sql)
        nx_problem(res, 400, "sql must be a string");
    return sql;
}

static json_t *result_json(const nx_db_result *r)
{
    if (!r)
        return json_null();
    json_t *cols = json_array(), *types = json_array();
    for (size_t c = 0; c < nx_db_cols(r); c++) {
        const char *name = nx_db_col_name(r, c);
        json_array_append_new(cols, name ? json_string(name) : json_null());
    }
    for (size_t i = 0; i < nx_db_rows(r); i++) {
        json_t *row = json_array();
        for (size_t c = 0; c < nx_db_cols(r); c++)
            json_array_append_new(row, json_string(type_name(nx_db_value_at(r, i, c)->type)));
        json_array_append_new(types, row);
    }
    return json_pack("{s:o, s:I, s:o, s:o}", "rows", (json_t *)nx_db_rows_json(r), "affected",
                     (json_int_t)nx_db_affected(r), "columns", cols, "types", types);
}

static json_t *error_json(nx_req *req)
{
    const nx_db_error *e = nx_db_error_of(req);
    return json_pack("{s:s, s:s, s:i, s:s?, s:s}", "kind", kind_name(e->kind), "sqlstate",
                     e->sqlstate, "code", e->code, "constraint", e->constraint, "message",
                     e->message);
}

/* Printable ASCII only: a header value must not carry CR, LF or other controls. */
static const char *header_safe(nx_arena *a, const char *s)
{
    char *out = nx_arena_strndup(a, s, strlen(s) > 200 ? 200 : strlen(s));
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = ' ';
    return out;
}

static void error_headers(nx_req *req, nx_res *res)
{
    const nx_db_error *e = nx_db_error_of(req);
    nx_arena *a = nx_req_arena(req);
    nx_res_header(res, "X-Db-Error", kind_name(e->kind));
    nx_res_header(res, "X-Db-Sqlstate", e->sqlstate);
    nx_res_header(res, "X-Db-Code", nx_arena_printf(a, "%d", e->code));
    if (e->constraint)
        nx_res_header(res, "X-Db-Constraint", header_safe(a, e->constraint));
    nx_res_header(res, "X-Db-Message", header_safe(a, e->message));
}

static void answer_error(nx_req *req, nx_res *res)
{
    error_headers(req, res);
    nx_db_problem(req, res);
}

/* ---- routes ------------------------------------------------------------------------------ */

/*
 * POST /dbkit/query {"sql": "...", "params": [...], "exec": false}: one statement through
 * nx_db_query (or nx_db_exec): {"rows", "affected", "columns", "types"} or the problem.
 */
static void query_handler(nx_req *req, nx_res *res)
{
    json_t *body = body_json(req, res);
    const char *sql = body ? sql_of(res, body) : NULL;
    const nx_db_value *params;
    size_t n;
    if (!sql || !params_of(req, res, body, &params, &n))
        return;
    if (json_is_true(json_object_get(body, "exec"))) {
        if (nx_db_exec(req, sql, params, n) != NX_OK)
            answer_error(req, res);
        else
            nx_json(res, 200, json_pack("{s:b}", "ok", 1));
        return;
    }
    nx_db_result *r = nx_db_query(req, sql, params, n);
    if (!r)
        answer_error(req, res);
    else
        nx_json(res, 200, result_json(r));
}

/* The statements of a JSON array [{sql, params}, ...] for nx_db_batch; NULL after a 400. */
static nx_db_stmt *stmts_of(nx_req *req, nx_res *res, json_t *arr, size_t *n)
{
    if (!json_is_array(arr)) {
        nx_problem(res, 400, "statements must be an array");
        return NULL;
    }
    *n = json_array_size(arr);
    nx_db_stmt *st = nx_arena_calloc(nx_req_arena(req), *n ? *n : 1, sizeof(*st));
    for (size_t i = 0; i < *n; i++) {
        json_t *o = json_array_get(arr, i);
        st[i].sql = sql_of(res, o);
        if (!st[i].sql || !params_of(req, res, o, &st[i].params, &st[i].nparams))
            return NULL;
    }
    return st;
}

/* Which statements of a batch got a result: "1,1,0". */
static const char *batch_mask(nx_req *req, const nx_db_stmt *st, size_t n)
{
    char *s = nx_arena_alloc(nx_req_arena(req), 2 * n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (i)
            s[o++] = ',';
        s[o++] = st[i].result ? '1' : '0';
    }
    s[o] = '\0';
    return s;
}

/*
 * POST /dbkit/batch {"statements": [{sql, params}, ...]}: nx_db_batch; {"results": [...]}
 * or the problem, with X-Batch-Results telling which statements kept a result either way.
 */
static void batch_handler(nx_req *req, nx_res *res)
{
    json_t *body = body_json(req, res);
    size_t n = 0;
    nx_db_stmt *st = body ? stmts_of(req, res, json_object_get(body, "statements"), &n) : NULL;
    if (!st)
        return;
    int rc = nx_db_batch(req, st, n);
    nx_res_header(res, "X-Batch-Results", batch_mask(req, st, n));
    if (rc != NX_OK) {
        answer_error(req, res);
        return;
    }
    json_t *results = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(results, result_json(st[i].result));
    nx_json(res, 200, json_pack("{s:o}", "results", results));
}

/*
 * POST /dbkit/tx {"statements": [{sql, params}...], "end": "commit"|"rollback"|"none"}:
 * begin, each statement (the first failure answers its problem and leaves the transaction
 * to the server's end-of-request rollback), then the end asked for.
 */
static void tx_handler(nx_req *req, nx_res *res)
{
    json_t *body = body_json(req, res);
    size_t n = 0;
    nx_db_stmt *st = body ? stmts_of(req, res, json_object_get(body, "statements"), &n) : NULL;
    if (!st)
        return;
    const char *end = json_string_value(json_object_get(body, "end"));
    if (!end)
        end = "commit";
    if (nx_db_begin(req) != NX_OK) {
        answer_error(req, res);
        return;
    }
    json_t *results = json_array();
    for (size_t i = 0; i < n; i++) {
        nx_db_result *r = nx_db_query(req, st[i].sql, st[i].params, st[i].nparams);
        if (!r) {
            json_decref(results);
            nx_res_header(res, "X-Failed-Statement", nx_arena_printf(nx_req_arena(req), "%zu", i));
            answer_error(req, res);
            return;
        }
        json_array_append_new(results, result_json(r));
    }
    int rc = NX_OK;
    if (strcmp(end, "commit") == 0)
        rc = nx_db_commit(req);
    else if (strcmp(end, "rollback") == 0)
        rc = nx_db_rollback(req);
    if (rc != NX_OK) {
        json_decref(results);
        answer_error(req, res);
        return;
    }
    nx_json(res, 200, json_pack("{s:o}", "results", results));
}

/*
 * POST /dbkit/steps {"steps": [{"op": "begin"|"commit"|"rollback"|"query"|"exec"|"batch"|
 * "sleep", ...}], "stop_on_error": false}: runs every step and reports each outcome
 * ({"op", "ok", "error", "result"}), 200. For the API's misuse paths and for holding a
 * transaction or a connection across waits. With "stop_on_error" and "problem": true, a
 * failed database step answers its problem instead.
 */
static void steps_handler(nx_req *req, nx_res *res)
{
    json_t *body = body_json(req, res);
    json_t *steps = body ? json_object_get(body, "steps") : NULL;
    if (!body)
        return;
    if (!json_is_array(steps)) {
        nx_problem(res, 400, "steps must be an array");
        return;
    }
    bool stop = json_is_true(json_object_get(body, "stop_on_error"));
    json_t *out = json_array();
    for (size_t i = 0; i < json_array_size(steps); i++) {
        json_t *s = json_array_get(steps, i);
        const char *op = json_string_value(json_object_get(s, "op"));
        if (!op) {
            json_decref(out);
            nx_problem(res, 400, "steps[%zu].op must be a string", i);
            return;
        }
        int rc = NX_OK;
        json_t *result = NULL;
        if (strcmp(op, "begin") == 0) {
            rc = nx_db_begin(req);
        } else if (strcmp(op, "commit") == 0) {
            rc = nx_db_commit(req);
        } else if (strcmp(op, "rollback") == 0) {
            rc = nx_db_rollback(req);
        } else if (strcmp(op, "query") == 0 || strcmp(op, "exec") == 0) {
            const nx_db_value *params;
            size_t n;
            const char *sql = sql_of(res, s);
            if (!sql || !params_of(req, res, s, &params, &n)) {
                json_decref(out);
                return;
            }
            if (op[0] == 'e') {
                rc = nx_db_exec(req, sql, params, n);
            } else {
                nx_db_result *r = nx_db_query(req, sql, params, n);
                rc = r ? NX_OK : NX_ERR;
                result = r ? result_json(r) : NULL;
            }
        } else if (strcmp(op, "batch") == 0) {
            size_t n = 0;
            nx_db_stmt *st = stmts_of(req, res, json_object_get(s, "statements"), &n);
            if (!st) {
                json_decref(out);
                return;
            }
            rc = nx_db_batch(req, st, n);
            result = json_array();
            for (size_t k = 0; k < n; k++)
                json_array_append_new(result, result_json(st[k].result));
        } else if (strcmp(op, "sleep") == 0) {
            json_int_t ms = json_integer_value(json_object_get(s, "ms"));
            rc = nx_sleep_ms(req, ms > 0 && ms < SLEEP_MAX_MS ? (uint64_t)ms : 0);
        } else {
            json_decref(out);
            nx_problem(res, 400, "steps[%zu].op %s is unknown", i, op);
            return;
        }
        bool is_db = strcmp(op, "sleep") != 0;
        json_array_append_new(out, json_pack("{s:s, s:b, s:o, s:o}", "op", op, "ok", rc == NX_OK,
                                             "error",
                                             rc != NX_OK && is_db ? error_json(req) : json_null(),
                                             "result", result ? result : json_null()));
        if (rc != NX_OK && stop) {
            if (is_db && json_is_true(json_object_get(body, "problem"))) {
                json_decref(out);
                answer_error(req, res);
                return;
            }
            break;
        }
    }
    nx_json(res, 200, json_pack("{s:o}", "steps", out));
}

/* Text as a JSON string, or as base64 when it is not UTF-8; null for NULL. */
static json_t *text_json(const char *text)
{
    if (!text)
        return json_null();
    json_t *j = json_string(text);
    return j ? j : b64_json(text, strlen(text));
}

/* Every getter of one column of row (out of range allowed: the getters must cope). */
static json_t *getters_json(const nx_db_result *r, size_t row, size_t col)
{
    const char *text = nx_db_text(r, row, col);
    nx_str blob = nx_db_blob(r, row, col);
    const char *name = nx_db_col_name(r, col);
    return json_pack(
        "{s:s?, s:i, s:s, s:b, s:I, s:f, s:b, s:o, s:o, s:I}", "name", name, "index_by_name",
        name ? nx_db_col_index(r, name) : -1, "type", type_name(nx_db_value_at(r, row, col)->type),
        "is_null", nx_db_is_null(r, row, col), "i64", (json_int_t)nx_db_i64(r, row, col), "f64",
        nx_db_f64(r, row, col), "bool", nx_db_bool(r, row, col), "text", text_json(text),
        "blob_b64", blob.ptr ? b64_json(blob.ptr, blob.len) : json_null(), "blob_len",
        (json_int_t)blob.len);
}

/*
 * POST /dbkit/get {"sql", "params", "row": 0}: the typed getters of every column of that
 * row, plus one column past the end, plus the row past the end: {"nrows", "ncols",
 * "values": [...], "col_past_end", "row_past_end", "row_json_past_end_is_null", "missing_col"}.
 */
static void get_handler(nx_req *req, nx_res *res)
{
    json_t *body = body_json(req, res);
    const char *sql = body ? sql_of(res, body) : NULL;
    const nx_db_value *params;
    size_t n;
    if (!sql || !params_of(req, res, body, &params, &n))
        return;
    size_t row = (size_t)json_integer_value(json_object_get(body, "row"));
    nx_db_result *r = nx_db_query(req, sql, params, n);
    if (!r) {
        answer_error(req, res);
        return;
    }
    json_t *vals = json_array();
    for (size_t c = 0; c < nx_db_cols(r); c++)
        json_array_append_new(vals, getters_json(r, row, c));
    json_t *past_row = nx_db_row_json(r, nx_db_rows(r));
    bool past_null = past_row == NULL;
    json_decref(past_row);
    nx_json(res, 200,
            json_pack("{s:I, s:I, s:o, s:o, s:o, s:b, s:i, s:o}", "nrows",
                      (json_int_t)nx_db_rows(r), "ncols", (json_int_t)nx_db_cols(r), "values", vals,
                      "col_past_end", getters_json(r, row, nx_db_cols(r)), "row_past_end",
                      getters_json(r, nx_db_rows(r), 0), "row_json_past_end_is_null", past_null,
                      "missing_col", nx_db_col_index(r, "no such column dbkit"), "row_json",
                      nx_db_rows(r) > row ? nx_db_row_json(r, row) : json_null()));
}

/* GET /dbkit/info: the backend's name and the error of a request that made no call. */
static void info_handler(nx_req *req, nx_res *res)
{
    const nx_db_error *e = nx_db_error_of(req);
    nx_json(res, 200,
            json_pack("{s:s, s:s}", "backend", nx_db_backend(), "error_kind", kind_name(e->kind)));
}

static int dbkit_init(nx_plugin *p)
{
    static const struct {
        const char *method;
        const char *pattern;
        nx_handler_fn fn;
    } routes[] = {
        {"POST", "/dbkit/query", query_handler}, {"POST", "/dbkit/batch", batch_handler},
        {"POST", "/dbkit/tx", tx_handler},       {"POST", "/dbkit/steps", steps_handler},
        {"POST", "/dbkit/get", get_handler},     {"GET", "/dbkit/info", info_handler},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (nx_route(p, routes[i].method, routes[i].pattern, routes[i].fn, NX_ROUTE_DEFAULT) !=
            NX_OK) {
            nx_log_error("dbkit: cannot register %s %s", routes[i].method, routes[i].pattern);
            return -1;
        }
    }
    return 0;
}

NEXUS_PLUGIN("dbkit", "1.0.0", dbkit_init, NULL);
