/*
 * todo - a JSON API over the server's database: the model of a plugin that owns data.
 *
 *   GET    /todos               list: ?limit= &offset= &done=true|false &q=text &order=
 *   POST   /todos               create: {"title": "...", "done": false} -> 201 + Location
 *   GET    /todos/{id:int}      one todo, or 404
 *   PUT    /todos/{id:int}      full replace: title and done both required
 *   PATCH  /todos/{id:int}      partial update: title and/or done
 *   DELETE /todos/{id:int}      204, or 404
 *
 * Errors are problem+json: 400 for a body that is not JSON, 415 for a body that is not
 * application/json, 422 naming the field or query parameter at fault, 404 for an unknown
 * id, and whatever nx_db_problem makes of a database failure (503 when it is down, 504
 * when it is slow, 500 for a statement that failed; the reason goes to the log only).
 *
 * Storage: the table `todos` of the server's database (database.type: SQLite, PostgreSQL
 * or MySQL), created by this plugin's migrations (migrations/0001_todos.*.sql). Every
 * statement is a literal with $1..$N parameters, so each connection prepares it once and
 * no value is ever written into SQL. One text serves every backend, except that MySQL
 * has no RETURNING: there a create reads back the id it was given, and an update the row
 * it changed, in the same batch (see has_returning).
 *
 * Cache: reads (one todo, a page of the list) are answered from the server's cache when it
 * holds them (the memory cache shared by the workers, or Redis shared by every instance).
 * Their keys carry a generation number that every successful write increments after its
 * change is committed: a reader that read the generation before a write and the rows
 * before the commit stores its answer under the old generation, where nobody looks any
 * more, so no stale answer can be served after a write, by any worker or instance. Entries
 * live plugins.todo.cache_ttl (30s; 0 turns the cache off), which also bounds staleness
 * when a write could not reach the cache.
 */
#include <nexus/nexus.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define TITLE_MAX 200        /* characters (code points) after trimming */
#define Q_MAX TITLE_MAX      /* a longer search text cannot match any title */
#define PAGE_SIZE_LIMIT 1000 /* the largest max_page_size the settings accept */
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* From the settings, fixed by init in the master and inherited by the workers. */
static int64_t page_size = 20, max_page_size = 100;
static uint64_t cache_ttl_ms = 30000;

/* ==== the cache ======================================================================= */

#define GEN_KEY "todo:gen"

/*
 * The current generation, or -1 when answers are not to be cached (the cache is off or
 * failing). A missing generation (first use, a Redis restart, an eviction) starts from
 * the wall clock in microseconds, so it never repeats an earlier one.
 */
static int64_t cache_gen(nx_req *req)
{
    if (!cache_ttl_ms)
        return -1;
    nx_str v;
    if (nx_cache_get(req, GEN_KEY, &v))
        return strtoll(v.ptr, NULL, 10);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t seed = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000, gen;
    return nx_cache_incr(req, GEN_KEY, seed, NX_CACHE_FOREVER, &gen) == NX_OK ? gen : -1;
}

/* After a committed write: every cached answer becomes unreachable. */
static void cache_invalidate(nx_req *req)
{
    int64_t gen;
    if (cache_ttl_ms && nx_cache_incr(req, GEN_KEY, 1, NX_CACHE_FOREVER, &gen) != NX_OK)
        nx_log_warn("todo: the cache could not be invalidated; cached reads may be up to "
                    "plugins.todo.cache_ttl old");
}

/* Answers from the cache when it holds key (NULL: not cacheable). */
static bool cache_answer(nx_req *req, nx_res *res, const char *key)
{
    nx_str hit;
    if (!key || !nx_cache_get(req, key, &hit))
        return false;
    nx_res_body_static(res, "application/json", hit.ptr, hit.len);
    nx_res_header(res, "X-Cache", "hit");
    return true;
}

/* Sends doc (stolen) with status 200 and keeps its text under key (when not NULL). */
static void send_and_cache(nx_req *req, nx_res *res, json_t *doc, const char *key)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text) {
        nx_problem(res, 500, "the answer could not be serialized");
        return;
    }
    size_t len = strlen(text);
    nx_res_body(res, "application/json", text, len);
    if (key) {
        nx_cache_set(req, key, text, len, cache_ttl_ms);
        nx_res_header(res, "X-Cache", "miss");
    }
    free(text);
}

/* ==== the todos table ================================================================= */

#define TODO_COLUMNS "id, title, done, created_at, updated_at"

/*
 * The filters of a listing, in one text for every request: $1 and $2 are the values of
 * `done` to show (true, false for any), $3 a LIKE pattern ("%" for any title). Written
 * without NULL tests ("$1 IS NULL OR done = $1"), which PostgreSQL refuses to prepare: it
 * cannot tell the type of a parameter that is only compared with NULL. lower() on both
 * sides makes the search ASCII case-insensitive in every backend; '!' escapes the
 * pattern's wildcards, since a backslash means different things in each.
 */
#define TODO_MATCH "done IN ($1, $2) AND lower(title) LIKE lower($3) ESCAPE '!'"

/* A page and, in every row, the total: one statement, so both come from one snapshot. */
#define TODO_PAGE(order)                                                                           \
    "SELECT " TODO_COLUMNS ", (SELECT count(*) FROM todos WHERE " TODO_MATCH ") AS total"          \
    " FROM todos WHERE " TODO_MATCH " ORDER BY " order " LIMIT $4 OFFSET $5"

/* The orders a listing may ask for; the first is the default. */
static const struct {
    const char *name, *sql;
} orders[] = {
    {"id", TODO_PAGE("id")},
    {"-id", TODO_PAGE("id DESC")},
    {"created_at", TODO_PAGE("created_at, id")},
    {"-created_at", TODO_PAGE("created_at DESC, id DESC")},
};

/* The total alone, for a page past the end (it has no row to carry it). */
static const char count_sql[] = "SELECT count(*) FROM todos WHERE " TODO_MATCH;

static const char get_sql[] = "SELECT " TODO_COLUMNS " FROM todos WHERE id = $1";

static const char delete_sql[] = "DELETE FROM todos WHERE id = $1";

/* $1 title, $2 done, $3 now (both timestamps). */
#define TODO_INSERT                                                                                \
    "INSERT INTO todos (title, done, created_at, updated_at) VALUES ($1, $2, $3, $3)"

/*
 * $1 id, $2 title, $3 done, $4 now. NULL leaves a column as it is: PUT binds both, PATCH
 * what it was given, so one statement applies either, and a PATCH never loses a
 * concurrent change to the field it leaves alone.
 */
#define TODO_UPDATE                                                                                \
    "UPDATE todos SET title = coalesce($2, title), done = coalesce($3, done), updated_at = $4"     \
    " WHERE id = $1"

static const char insert_returning_sql[] = TODO_INSERT " RETURNING " TODO_COLUMNS;
static const char update_returning_sql[] = TODO_UPDATE " RETURNING " TODO_COLUMNS;

/* MySQL has no RETURNING: the statement alone, then the id this connection just inserted
 * or the row just updated, read in the same batch (which keeps one connection). */
static const char insert_sql[] = TODO_INSERT;
static const char inserted_id_sql[] = "SELECT LAST_INSERT_ID()";
static const char update_sql[] = TODO_UPDATE;

/* SQLite (3.35+) and PostgreSQL return the row a statement wrote; MySQL does not. */
static bool has_returning(void)
{
    return strcmp(nx_db_backend(), "mysql") != 0;
}

/* A todo as the API's JSON object (a new reference). */
static json_t *todo_pack(int64_t id, const char *title, bool done, const char *created,
                         const char *updated)
{
    return json_pack("{s:I, s:s, s:b, s:s, s:s}", "id", (json_int_t)id, "title", title ? title : "",
                     "done", done, "created_at", created ? created : "", "updated_at",
                     updated ? updated : "");
}

/* Row `row` of a TODO_COLUMNS result as JSON. The getters, not nx_db_row_json: `done` is
 * a BOOLEAN in PostgreSQL and SQLite but a TINYINT in MySQL, and the API answers
 * true/false from all three. */
static json_t *todo_json(const nx_db_result *r, size_t row)
{
    return todo_pack(nx_db_i64(r, row, 0), nx_db_text(r, row, 1), nx_db_bool(r, row, 2),
                     nx_db_text(r, row, 3), nx_db_text(r, row, 4));
}

/* Now as ISO 8601 UTC with milliseconds ("2026-01-31T12:34:56.789Z"): text that sorts
 * in time order, and that every backend stores alike. */
static void now_iso8601(char out[32])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000L);
}

/* "%q%" with q's own wildcards escaped, so "50%" finds "50%" and not "500". */
static const char *like_pattern(nx_arena *a, const char *q)
{
    if (!q)
        return "%";
    char *p = nx_arena_alloc(a, 2 * strlen(q) + 3), *o = p;
    *o++ = '%';
    for (; *q; q++) {
        if (*q == '%' || *q == '_' || *q == '!')
            *o++ = '!';
        *o++ = *q;
    }
    *o++ = '%';
    *o = '\0';
    return p;
}

/* ==== reading requests ================================================================ */

/* What a list request asks for. */
typedef struct todo_filter {
    int done;      /* 0 or 1; -1 for any */
    const char *q; /* substring of the title, or NULL */
    int64_t limit, offset;
    const char *sql; /* the page statement of the order asked for */
} todo_filter;

/* The fields a create or update sets: NULL title / done -1 leave them as they are. */
typedef struct todo_input {
    const char *title;
    int done;
} todo_input;

typedef enum body_mode {
    BODY_CREATE,  /* title required, done optional (false) */
    BODY_REPLACE, /* title and done required */
    BODY_PATCH,   /* at least one of them */
} body_mode;

/* A decimal integer in 0..max, digits only; false for anything else. */
static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        unsigned d = (unsigned)(*s - '0');
        if (d > max || v > (max - d) / 10) /* v * 10 + d > max, without overflow */
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* Number of UTF-8 code points in s (jansson and the URL decoder hand over valid UTF-8
 * or, for q, bytes whose count bounds the answer from above). */
static size_t utf8_length(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xc0) != 0x80;
    return n;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Whether the Content-Type names JSON (parameters such as charset are allowed). */
static bool is_json_type(const char *ctype, bool patch)
{
    if (!ctype)
        return false;
    while (is_space(*ctype))
        ctype++;
    size_t n = strcspn(ctype, ";");
    while (n && is_space(ctype[n - 1]))
        n--;
    static const char json[] = "application/json", merge[] = "application/merge-patch+json";
    return (n == sizeof json - 1 && strncasecmp(ctype, json, n) == 0) ||
           (patch && n == sizeof merge - 1 && strncasecmp(ctype, merge, n) == 0);
}

/* The {id:int} of the path; false for an id no todo can have (answered 404). */
static bool path_id(nx_req *req, nx_res *res, int64_t *id)
{
    if (nx_req_param_i64(req, "id", id) && *id > 0)
        return true;
    nx_problem(res, 404, "no todo with id %.40s", nx_req_param(req, "id"));
    return false;
}

/* Checks the title member and stores it trimmed, in the arena. Answers 422 on error. */
static bool read_title(nx_req *req, nx_res *res, json_t *v, todo_input *in)
{
    if (!json_is_string(v)) {
        nx_problem(res, 422, "title must be a string");
        return false;
    }
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    while (len && is_space(*s))
        s++, len--;
    while (len && is_space(s[len - 1]))
        len--;
    if (len == 0) {
        nx_problem(res, 422, "title must not be empty");
        return false;
    }
    if (utf8_length(s, len) > TITLE_MAX) {
        nx_problem(res, 422, "title must be at most %d characters", TITLE_MAX);
        return false;
    }
    in->title = nx_arena_strndup(nx_req_arena(req), s, len);
    return true;
}

/* Validates the JSON object of a create or update into *in. Answers 422 on error. */
static bool read_fields(nx_req *req, nx_res *res, json_t *doc, body_mode mode, todo_input *in)
{
    if (!json_is_object(doc)) {
        nx_problem(res, 422, "the body must be a JSON object");
        return false;
    }
    for (void *it = json_object_iter(doc); it; it = json_object_iter_next(doc, it)) {
        const char *key = json_object_iter_key(it);
        if (strcmp(key, "title") != 0 && strcmp(key, "done") != 0) {
            if (strlen(key) <= 64)
                nx_problem(res, 422, "unknown field \"%s\": a todo has title and done", key);
            else
                nx_problem(res, 422, "unknown field: a todo has title and done");
            return false;
        }
    }
    json_t *title = json_object_get(doc, "title");
    json_t *done = json_object_get(doc, "done");
    if (!title && mode != BODY_PATCH) {
        nx_problem(res, 422, "title is required");
        return false;
    }
    if (title && !read_title(req, res, title, in))
        return false;
    if (!done && mode == BODY_REPLACE) {
        nx_problem(res, 422, "done is required");
        return false;
    }
    if (done && !json_is_boolean(done)) {
        nx_problem(res, 422, "done must be a boolean");
        return false;
    }
    if (done)
        in->done = json_is_true(done);
    else if (mode == BODY_CREATE)
        in->done = 0;
    if (mode == BODY_PATCH && !title && !done) {
        nx_problem(res, 422, "nothing to update: give title, done or both");
        return false;
    }
    return true;
}

/*
 * The request body as a todo_input: 415, 400 or 422 answered when it is not one. A body
 * that is not JSON at all is a 400 (the request is malformed, RFC 9110 15.5.1); JSON of
 * the wrong shape is a 422, as FastAPI answers it.
 */
static bool read_body(nx_req *req, nx_res *res, body_mode mode, todo_input *in)
{
    *in = (todo_input){.title = NULL, .done = -1};
    if (!is_json_type(nx_req_header(req, "Content-Type"), mode == BODY_PATCH)) {
        nx_problem(res, 415, "Content-Type must be application/json");
        return false;
    }
    nx_str body = nx_req_body(req);
    json_error_t err;
    json_t *doc = json_loadb(body.ptr, body.len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
    if (!doc) {
        nx_problem(res, 400, "the body is not valid JSON: %s (line %d, column %d)", err.text,
                   err.line, err.column);
        return false;
    }
    bool ok = read_fields(req, res, doc, mode, in);
    json_decref(doc);
    return ok;
}

/* The list's query parameters into *f; 422 naming the parameter when one is invalid. */
static bool read_filter(nx_req *req, nx_res *res, todo_filter *f)
{
    const char *limit = nx_req_query(req, "limit");
    const char *offset = nx_req_query(req, "offset");
    const char *done = nx_req_query(req, "done");
    const char *order = nx_req_query(req, "order");
    uint64_t v;

    *f = (todo_filter){
        .done = -1, .q = nx_req_query(req, "q"), .limit = page_size, .sql = orders[0].sql};
    if (limit) {
        if (!parse_u64(limit, (uint64_t)max_page_size, &v) || v < 1) {
            nx_problem(res, 422, "limit must be an integer from 1 to %lld",
                       (long long)max_page_size);
            return false;
        }
        f->limit = (int64_t)v;
    }
    if (offset) {
        if (!parse_u64(offset, INT64_MAX, &v)) {
            nx_problem(res, 422, "offset must be an integer >= 0");
            return false;
        }
        f->offset = (int64_t)v;
    }
    if (done) {
        if (strcmp(done, "true") != 0 && strcmp(done, "false") != 0) {
            nx_problem(res, 422, "done must be true or false");
            return false;
        }
        f->done = strcmp(done, "true") == 0;
    }
    if (f->q && (strlen(f->q) > 4 * Q_MAX || utf8_length(f->q, strlen(f->q)) > Q_MAX)) {
        nx_problem(res, 422, "q must be at most %d characters", Q_MAX);
        return false;
    }
    if (order) {
        size_t i = 0;
        while (i < COUNT(orders) && strcmp(order, orders[i].name) != 0)
            i++;
        if (i == COUNT(orders)) {
            nx_problem(res, 422, "order must be id, -id, created_at or -created_at");
            return false;
        }
        f->sql = orders[i].sql;
    }
    return true;
}

/* ==== handlers ======================================================================== */

/* GET /todos */
static void list_todos(nx_req *req, nx_res *res)
{
    todo_filter f;
    if (!read_filter(req, res, &f))
        return;
    int64_t gen = cache_gen(req);
    char *key = NULL;
    if (gen >= 0) {
        size_t order = 0;
        while (order < COUNT(orders) && orders[order].sql != f.sql)
            order++;
        key =
            nx_arena_printf(nx_req_arena(req), "todo:%lld:list:%lld:%lld:%d:%zu:%s", (long long)gen,
                            (long long)f.limit, (long long)f.offset, f.done, order, f.q ? f.q : "");
        if (strlen(key) > NX_CACHE_KEY_MAX)
            key = NULL; /* a long search text: not worth a key */
    }
    if (cache_answer(req, res, key))
        return;
    /* $1, $2: see TODO_MATCH. done=true shows (true, true), false (false, false). */
    nx_db_value args[] = {
        NX_DB_BOOLV(f.done != 0),
        NX_DB_BOOLV(f.done == 1),
        NX_DB_STR(like_pattern(nx_req_arena(req), f.q)),
        NX_DB_I64(f.limit),
        NX_DB_I64(f.offset),
    };
    nx_db_result *page = nx_db_query(req, f.sql, args, COUNT(args));
    if (!page) {
        nx_db_problem(req, res);
        return;
    }
    int64_t total = nx_db_i64(page, 0, 5); /* 0 when the page is empty */
    if (nx_db_rows(page) == 0 && f.offset > 0) {
        nx_db_result *c = nx_db_query(req, count_sql, args, 3); /* $1..$3 only */
        if (!c) {
            nx_db_problem(req, res);
            return;
        }
        total = nx_db_i64(c, 0, 0);
    }
    json_t *items = json_array();
    for (size_t i = 0; i < nx_db_rows(page); i++)
        json_array_append_new(items, todo_json(page, i));
    send_and_cache(req, res,
                   json_pack("{s:o, s:I, s:I, s:I}", "items", items, "total", (json_int_t)total,
                             "limit", (json_int_t)f.limit, "offset", (json_int_t)f.offset),
                   key);
}

/* POST /todos */
static void create_todo(nx_req *req, nx_res *res)
{
    todo_input in;
    char now[32];
    if (!read_body(req, res, BODY_CREATE, &in))
        return;
    now_iso8601(now);
    nx_db_value args[] = {NX_DB_STR(in.title), NX_DB_BOOLV(in.done > 0), NX_DB_STR(now)};
    json_t *todo = NULL;
    if (has_returning()) {
        nx_db_result *r = nx_db_query(req, insert_returning_sql, args, COUNT(args));
        if (r)
            todo = todo_json(r, 0);
    } else {
        /* The row is what was inserted; only its id comes from the database. */
        nx_db_stmt steps[] = {
            {.sql = insert_sql, .params = args, .nparams = COUNT(args)},
            {.sql = inserted_id_sql},
        };
        if (nx_db_batch(req, steps, COUNT(steps)) == NX_OK)
            todo = todo_pack(nx_db_i64(steps[1].result, 0, 0), in.title, in.done > 0, now, now);
    }
    if (!todo) {
        nx_db_problem(req, res);
        return;
    }
    cache_invalidate(req);
    json_int_t id = json_integer_value(json_object_get(todo, "id"));
    nx_res_header(res, "Location", nx_arena_printf(nx_req_arena(req), "/todos/%lld", id));
    nx_json(res, 201, todo);
}

/* Answers a statement's result about todo id: its first row, or 404 when it has none. */
static void answer_todo(nx_req *req, nx_res *res, nx_db_result *r, int64_t id)
{
    if (!r)
        nx_db_problem(req, res);
    else if (nx_db_rows(r) == 0)
        nx_problem(res, 404, "no todo with id %lld", (long long)id);
    else
        nx_json(res, 200, todo_json(r, 0));
}

/* GET /todos/{id} */
static void get_todo(nx_req *req, nx_res *res)
{
    int64_t id;
    if (!path_id(req, res, &id))
        return;
    int64_t gen = cache_gen(req);
    const char *key = gen >= 0 ? nx_arena_printf(nx_req_arena(req), "todo:%lld:item:%lld",
                                                 (long long)gen, (long long)id)
                               : NULL;
    if (cache_answer(req, res, key))
        return;
    nx_db_result *r = nx_db_query(req, get_sql, NX_DB_ARGS(NX_DB_I64(id)));
    if (r && nx_db_rows(r) > 0)
        send_and_cache(req, res, todo_json(r, 0), key);
    else
        answer_todo(req, res, r, id);
}

/* PUT and PATCH /todos/{id} */
static void update_todo(nx_req *req, nx_res *res, body_mode mode)
{
    int64_t id;
    todo_input in;
    char now[32];
    if (!path_id(req, res, &id) || !read_body(req, res, mode, &in))
        return;
    now_iso8601(now);
    nx_db_value args[] = {NX_DB_I64(id), NX_DB_STR(in.title),
                          in.done < 0 ? NX_DB_NULLV : NX_DB_BOOLV(in.done), NX_DB_STR(now)};
    nx_db_result *r;
    if (has_returning()) {
        r = nx_db_query(req, update_returning_sql, args, COUNT(args));
    } else {
        /* The read sees the row as the update left it, or no row when there is none. */
        nx_db_stmt steps[] = {
            {.sql = update_sql, .params = args, .nparams = COUNT(args)},
            {.sql = get_sql, .params = args, .nparams = 1},
        };
        r = nx_db_batch(req, steps, COUNT(steps)) == NX_OK ? steps[1].result : NULL;
    }
    if (r && nx_db_rows(r) > 0)
        cache_invalidate(req);
    answer_todo(req, res, r, id);
}

static void replace_todo(nx_req *req, nx_res *res)
{
    update_todo(req, res, BODY_REPLACE);
}

static void patch_todo(nx_req *req, nx_res *res)
{
    update_todo(req, res, BODY_PATCH);
}

/* DELETE /todos/{id} */
static void delete_todo(nx_req *req, nx_res *res)
{
    int64_t id;
    if (!path_id(req, res, &id))
        return;
    nx_db_result *r = nx_db_query(req, delete_sql, NX_DB_ARGS(NX_DB_I64(id)));
    if (!r)
        nx_db_problem(req, res);
    else if (nx_db_affected(r) == 0)
        nx_problem(res, 404, "no todo with id %lld", (long long)id);
    else {
        cache_invalidate(req);
        nx_res_status(res, 204);
    }
}

/* ==== lifecycle ======================================================================= */

static int todo_init(nx_plugin *p)
{
    page_size = nx_plugin_config_int(p, "page_size");
    cache_ttl_ms = nx_plugin_config_ms(p, "cache_ttl");
    max_page_size = nx_plugin_config_int(p, "max_page_size");
    if (max_page_size < 1 || max_page_size > PAGE_SIZE_LIMIT) {
        nx_log_error("todo: plugins.todo.max_page_size must be from 1 to %d, not %lld",
                     PAGE_SIZE_LIMIT, (long long)max_page_size);
        return -1;
    }
    if (page_size < 1 || page_size > max_page_size) {
        nx_log_error("todo: plugins.todo.page_size must be from 1 to max_page_size (%lld), "
                     "not %lld",
                     (long long)max_page_size, (long long)page_size);
        return -1;
    }
    static const struct {
        const char *method, *pattern;
        nx_handler_fn fn;
    } routes[] = {
        {"GET", "/todos", list_todos},
        {"POST", "/todos", create_todo},
        {"GET", "/todos/{id:int}", get_todo},
        {"PUT", "/todos/{id:int}", replace_todo},
        {"PATCH", "/todos/{id:int}", patch_todo},
        {"DELETE", "/todos/{id:int}", delete_todo},
    };
    for (size_t i = 0; i < COUNT(routes); i++)
        if (nx_route(p, routes[i].method, routes[i].pattern, routes[i].fn, NX_ROUTE_DEFAULT) !=
            NX_OK)
            return -1;
    return 0;
}

static const nx_plugin_setting settings[] = {
    {.name = "page_size",
     .type = NX_SETTING_INT,
     .def = "20",
     .help = "todos per page when a listing gives no limit"},
    {.name = "max_page_size",
     .type = NX_SETTING_INT,
     .def = "100",
     .help = "the largest limit a listing may ask for (at most 1000)"},
    {.name = "cache_ttl",
     .type = NX_SETTING_DURATION,
     .def = "30s",
     .help = "how long reads stay in the server's cache (0 turns caching off)"},
    {.name = NULL},
};

NEXUS_PLUGIN_WITH_SETTINGS("todo", "1.1.0", todo_init, NULL, settings);
