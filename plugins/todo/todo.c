/*
 * todo - a JSON API over an embedded SQLite database: the model of a plugin that owns data.
 *
 *   GET    /todos               list: ?limit=1..100 (20) &offset=>=0 (0) &done=true|false &q=text
 *   POST   /todos               create: {"title": "...", "done": false} -> 201 + Location
 *   GET    /todos/{id:int}      one todo, or 404
 *   PUT    /todos/{id:int}      full replace: title and done both required
 *   PATCH  /todos/{id:int}      partial update: title and/or done
 *   DELETE /todos/{id:int}      204, or 404
 *
 * Errors are problem+json: 400 for a body that is not JSON, 415 for a body that is not
 * application/json, 422 naming the field or query parameter at fault, 404 for an unknown id,
 * 503 "database unavailable" when SQLite fails (its message is logged once, here).
 *
 * Storage: the file named by the `db_path` setting, shared by every worker process. The
 * master creates it (and its missing folders) and the table in init; each worker opens its
 * own connection in its start hook (WAL, busy timeout) and closes it in its stop hook.
 * Statements are prepared once per connection and every value is a bound parameter.
 *
 * The SQL and the row <-> JSON mapping sit in small functions (the "storage" section) so
 * that moving onto the server's database API changes that section only. Until then, a
 * SQLite call runs on the worker's thread: it does not park the request as the database
 * API will, and a write waiting for another worker's lock holds this worker for up to the
 * busy timeout. Writes here are single short statements, so that wait is rare and brief.
 */
#include <nexus/nexus.h>

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TITLE_MAX 200 /* characters (code points) after trimming */
#define LIMIT_DEFAULT 20
#define LIMIT_MAX 100
#define Q_MAX TITLE_MAX /* a longer search text cannot match any title */
#define BUSY_TIMEOUT_MS 5000

/* ==== storage ========================================================================= */

/* Absolute path of the database, fixed by init in the master and inherited by the workers
 * it forks, so that a later chdir cannot make two workers open two files. */
static char db_file[PATH_MAX];

/* This worker's connection; NULL before the start hook or after an error closed it. */
static sqlite3 *db;

/* The last SQLite failure, kept for the handler that turns it into a 503 and logs it. */
static char db_errmsg[256];
static int db_errcode;

static const char schema_sql[] = "CREATE TABLE IF NOT EXISTS todos ("
                                 " id INTEGER PRIMARY KEY AUTOINCREMENT,"
                                 " title TEXT NOT NULL,"
                                 " done INTEGER NOT NULL DEFAULT 0 CHECK (done IN (0, 1)),"
                                 " created_at TEXT NOT NULL,"
                                 " updated_at TEXT NOT NULL)";

#define TODO_COLUMNS "id, title, done, created_at, updated_at"

/* ?1 done (NULL: any), ?2 LIKE pattern (NULL: any). LIKE is case-insensitive for ASCII. */
#define TODO_FILTER "WHERE (?1 IS NULL OR done = ?1) AND (?2 IS NULL OR title LIKE ?2 ESCAPE '\\')"

enum {
    ST_INSERT,
    ST_GET,
    ST_UPDATE,
    ST_DELETE,
    ST_LIST,
    ST_COUNT,
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_N,
};

/* Each string in parentheses: clang reads a bare concatenation in an array initializer as
 * a forgotten comma. */
static const char *const stmt_sql[ST_N] = {
    [ST_INSERT] = ("INSERT INTO todos (title, done, created_at, updated_at)"
                   " VALUES (?1, ?2, ?3, ?3) RETURNING " TODO_COLUMNS),
    [ST_GET] = ("SELECT " TODO_COLUMNS " FROM todos WHERE id = ?1"),
    /* NULL leaves a column as it is: PUT binds both, PATCH what it was given. */
    [ST_UPDATE] = ("UPDATE todos SET title = coalesce(?2, title), done = coalesce(?3, done),"
                   " updated_at = ?4 WHERE id = ?1 RETURNING " TODO_COLUMNS),
    [ST_DELETE] = "DELETE FROM todos WHERE id = ?1",
    [ST_LIST] =
        ("SELECT " TODO_COLUMNS " FROM todos " TODO_FILTER " ORDER BY id LIMIT ?3 OFFSET ?4"),
    [ST_COUNT] = ("SELECT count(*) FROM todos " TODO_FILTER),
    [ST_BEGIN] = "BEGIN",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
};

/* Prepared on first use and kept for the life of the connection. */
static sqlite3_stmt *stmts[ST_N];

/* Outcomes of the storage functions. */
enum { DB_OK = 0, DB_ERR = -1, DB_NOT_FOUND = 1 };

/* What a list request asks for. */
typedef struct todo_filter {
    int done;      /* 0 or 1; -1 for any */
    const char *q; /* substring of the title, or NULL */
    int64_t limit, offset;
} todo_filter;

/* The fields a create or update sets: NULL title / done -1 leave them as they are. */
typedef struct todo_input {
    const char *title;
    int done;
} todo_input;

static int db_fail(sqlite3 *conn)
{
    db_errcode = conn ? sqlite3_extended_errcode(conn) : SQLITE_NOMEM;
    snprintf(db_errmsg, sizeof db_errmsg, "%s", conn ? sqlite3_errmsg(conn) : "out of memory");
    return DB_ERR;
}

/* Now as ISO 8601 UTC with milliseconds ("2026-01-31T12:34:56.789Z"). */
static void now_iso8601(char out[32])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000L);
}

/*
 * Creates the folders above path that do not exist yet (as `mkdir -p` of its dirname).
 * Returns 0, or -1 with errno set.
 */
static int make_parents(char *path)
{
    for (char *s = path + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        int rc = mkdir(path, 0750);
        int err = errno;
        *s = '/';
        if (rc != 0 && err != EEXIST) {
            errno = err;
            return -1;
        }
    }
    return 0;
}

/* Opens path with the settings every connection needs and the table in place. */
static sqlite3 *db_connect(const char *path)
{
    sqlite3 *conn = NULL;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &conn, flags, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_extended_result_codes(conn, 1);
    if (sqlite3_busy_timeout(conn, BUSY_TIMEOUT_MS) != SQLITE_OK)
        goto fail;
    /* WAL: readers never wait for the writer, and every worker sees each commit at its
     * next statement. synchronous=NORMAL is durable across process crashes (not across a
     * power loss, where the last commits may roll back) and never corrupts the file. */
    if (sqlite3_exec(conn, "PRAGMA journal_mode = WAL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(conn, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(conn, schema_sql, NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    return conn;
fail:
    db_fail(conn);
    sqlite3_close(conn);
    return NULL;
}

static void db_close(void)
{
    for (int i = 0; i < ST_N; i++) {
        sqlite3_finalize(stmts[i]);
        stmts[i] = NULL;
    }
    sqlite3_close(db);
    db = NULL;
}

/* This worker's connection, (re)opened when an earlier failure closed it. */
static int db_ready(void)
{
    if (!db)
        db = db_connect(db_file);
    return db ? DB_OK : DB_ERR;
}

/* The statement for `which`, reset and ready to bind; NULL on failure (recorded). */
static sqlite3_stmt *stmt(int which)
{
    if (db_ready() != DB_OK)
        return NULL;
    if (!stmts[which] && sqlite3_prepare_v3(db, stmt_sql[which], -1, SQLITE_PREPARE_PERSISTENT,
                                            &stmts[which], NULL) != SQLITE_OK) {
        db_fail(db);
        return NULL;
    }
    return stmts[which];
}

/* Ends a use of st: an unreset statement would hold its read snapshot and hide later
 * commits of the other workers from this one. Returns rc. */
static int done_with(sqlite3_stmt *st, int rc)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

static const char *column_text(sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    return s ? (const char *)s : "";
}

/* The current row of a TODO_COLUMNS statement as the API's JSON object (new reference). */
static json_t *row_to_json(sqlite3_stmt *st)
{
    return json_pack("{s:I, s:s, s:b, s:s, s:s}", "id", (json_int_t)sqlite3_column_int64(st, 0),
                     "title", column_text(st, 1), "done", sqlite3_column_int(st, 2) != 0,
                     "created_at", column_text(st, 3), "updated_at", column_text(st, 4));
}

/* Runs st, bound, expecting at most one row: DB_OK with *out, DB_NOT_FOUND, or DB_ERR. */
static int one_row(sqlite3_stmt *st, json_t **out)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return done_with(st, DB_NOT_FOUND);
    if (rc != SQLITE_ROW)
        return done_with(st, db_fail(db));
    *out = row_to_json(st);
    rc = sqlite3_step(st); /* to SQLITE_DONE: a RETURNING statement completes here */
    if (rc != SQLITE_DONE) {
        json_decref(*out);
        *out = NULL;
        return done_with(st, db_fail(db));
    }
    return done_with(st, DB_OK);
}

/* A statement with no parameters and no rows (BEGIN, COMMIT, ROLLBACK). */
static int exec_stmt(int which)
{
    sqlite3_stmt *st = stmt(which);
    if (!st)
        return DB_ERR;
    return done_with(st, sqlite3_step(st) == SQLITE_DONE ? DB_OK : db_fail(db));
}

static int db_get(int64_t id, json_t **out)
{
    sqlite3_stmt *st = stmt(ST_GET);
    if (!st)
        return DB_ERR;
    sqlite3_bind_int64(st, 1, id);
    return one_row(st, out);
}

static int db_insert(const todo_input *in, json_t **out)
{
    char now[32];
    sqlite3_stmt *st = stmt(ST_INSERT);
    if (!st)
        return DB_ERR;
    now_iso8601(now);
    sqlite3_bind_text(st, 1, in->title, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, in->done > 0);
    sqlite3_bind_text(st, 3, now, -1, SQLITE_TRANSIENT);
    int rc = one_row(st, out);
    return rc == DB_NOT_FOUND ? db_fail(db) : rc;
}

/* One statement, so a PATCH never loses a concurrent change to the field it leaves alone. */
static int db_update(int64_t id, const todo_input *in, json_t **out)
{
    char now[32];
    sqlite3_stmt *st = stmt(ST_UPDATE);
    if (!st)
        return DB_ERR;
    now_iso8601(now);
    sqlite3_bind_int64(st, 1, id);
    if (in->title)
        sqlite3_bind_text(st, 2, in->title, -1, SQLITE_TRANSIENT);
    if (in->done >= 0)
        sqlite3_bind_int(st, 3, in->done);
    sqlite3_bind_text(st, 4, now, -1, SQLITE_TRANSIENT);
    return one_row(st, out);
}

static int db_delete(int64_t id)
{
    sqlite3_stmt *st = stmt(ST_DELETE);
    if (!st)
        return DB_ERR;
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) != SQLITE_DONE)
        return done_with(st, db_fail(db));
    return done_with(st, sqlite3_changes(db) > 0 ? DB_OK : DB_NOT_FOUND);
}

/* Binds ?1 and ?2 of TODO_FILTER; the search text becomes a LIKE pattern with its own
 * wildcards escaped, so "50%" finds "50%" and not "500". */
static void bind_filter(sqlite3_stmt *st, const todo_filter *f, char *pattern)
{
    if (f->done >= 0)
        sqlite3_bind_int(st, 1, f->done);
    if (f->q)
        sqlite3_bind_text(st, 2, pattern, -1, SQLITE_TRANSIENT);
}

static char *like_pattern(nx_arena *a, const char *q)
{
    if (!q)
        return NULL;
    char *p = nx_arena_alloc(a, 2 * strlen(q) + 3), *o = p;
    *o++ = '%';
    for (; *q; q++) {
        if (*q == '%' || *q == '_' || *q == '\\')
            *o++ = '\\';
        *o++ = *q;
    }
    *o++ = '%';
    *o = '\0';
    return p;
}

/* Appends the page of todos to items and sets *total, both from one read snapshot. */
static int db_list(nx_arena *a, const todo_filter *f, json_t *items, int64_t *total)
{
    char *pattern = like_pattern(a, f->q);
    if (exec_stmt(ST_BEGIN) != DB_OK)
        return DB_ERR;
    sqlite3_stmt *st = stmt(ST_COUNT);
    if (!st)
        goto fail;
    bind_filter(st, f, pattern);
    if (sqlite3_step(st) != SQLITE_ROW) {
        done_with(st, db_fail(db));
        goto fail;
    }
    *total = sqlite3_column_int64(st, 0);
    done_with(st, DB_OK);

    if (!(st = stmt(ST_LIST)))
        goto fail;
    bind_filter(st, f, pattern);
    sqlite3_bind_int64(st, 3, f->limit);
    sqlite3_bind_int64(st, 4, f->offset);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(items, row_to_json(st));
    if (rc != SQLITE_DONE) {
        done_with(st, db_fail(db));
        goto fail;
    }
    done_with(st, DB_OK);
    if (exec_stmt(ST_COMMIT) != DB_OK)
        goto fail;
    return DB_OK;
fail:
    /* Keep the failure's message, not ROLLBACK's. */
    if (db && !sqlite3_get_autocommit(db)) {
        char msg[sizeof db_errmsg];
        int code = db_errcode;
        memcpy(msg, db_errmsg, sizeof msg);
        exec_stmt(ST_ROLLBACK);
        memcpy(db_errmsg, msg, sizeof msg);
        db_errcode = code;
    }
    return DB_ERR;
}

/* ==== HTTP ============================================================================ */

/*
 * Answers 503 for a failed storage call and logs SQLite's reason, once, here. Unless the
 * failure was only another worker holding the lock past the busy timeout, the connection
 * is closed: the next request opens a fresh one (a replaced file, a dropped table).
 */
static void db_unavailable(nx_res *res)
{
    nx_log_error("todo: database %s: %s (sqlite error %d)", db_file, db_errmsg, db_errcode);
    int primary = db_errcode & 0xff;
    if (primary != SQLITE_BUSY && primary != SQLITE_LOCKED)
        db_close();
    nx_problem(res, 503, "database unavailable");
}

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
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* Number of UTF-8 code points in s (jansson has checked that it is valid UTF-8). */
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

typedef enum body_mode {
    BODY_CREATE,  /* title required, done optional (false) */
    BODY_REPLACE, /* title and done required */
    BODY_PATCH,   /* at least one of them */
} body_mode;

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

/* The request body as a todo_input: 415, 400 or 422 answered when it is not one. */
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
    uint64_t v;

    *f = (todo_filter){.done = -1, .q = nx_req_query(req, "q"), .limit = LIMIT_DEFAULT};
    if (limit) {
        if (!parse_u64(limit, LIMIT_MAX, &v) || v < 1) {
            nx_problem(res, 422, "limit must be an integer from 1 to %d", LIMIT_MAX);
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
    if (f->q && strlen(f->q) > 4 * Q_MAX) { /* bytes: the cheap bound first */
        nx_problem(res, 422, "q must be at most %d characters", Q_MAX);
        return false;
    }
    if (f->q && utf8_length(f->q, strlen(f->q)) > Q_MAX) {
        nx_problem(res, 422, "q must be at most %d characters", Q_MAX);
        return false;
    }
    return true;
}

/* GET /todos */
static void list_todos(nx_req *req, nx_res *res)
{
    todo_filter f;
    if (!read_filter(req, res, &f))
        return;
    json_t *items = json_array();
    int64_t total = 0;
    if (db_list(nx_req_arena(req), &f, items, &total) != DB_OK) {
        json_decref(items);
        db_unavailable(res);
        return;
    }
    nx_json(res, 200,
            json_pack("{s:o, s:I, s:I, s:I}", "items", items, "total", (json_int_t)total, "limit",
                      (json_int_t)f.limit, "offset", (json_int_t)f.offset));
}

/* POST /todos */
static void create_todo(nx_req *req, nx_res *res)
{
    todo_input in;
    json_t *todo = NULL;
    if (!read_body(req, res, BODY_CREATE, &in))
        return;
    if (db_insert(&in, &todo) != DB_OK) {
        db_unavailable(res);
        return;
    }
    json_int_t id = json_integer_value(json_object_get(todo, "id"));
    nx_res_header(res, "Location", nx_arena_printf(nx_req_arena(req), "/todos/%lld", id));
    nx_json(res, 201, todo);
}

/* The response to a storage call on todo id: status with todo (204: no body), 404, or 503. */
static void answer(nx_res *res, int rc, int64_t id, int status, json_t *todo)
{
    if (rc == DB_OK && status == 204)
        nx_res_status(res, status);
    else if (rc == DB_OK)
        nx_json(res, status, todo);
    else if (rc == DB_NOT_FOUND)
        nx_problem(res, 404, "no todo with id %lld", (long long)id);
    else
        db_unavailable(res);
}

/* GET /todos/{id} */
static void get_todo(nx_req *req, nx_res *res)
{
    int64_t id;
    json_t *todo = NULL;
    if (!path_id(req, res, &id))
        return;
    int rc = db_get(id, &todo); /* before answer() reads todo */
    answer(res, rc, id, 200, todo);
}

/* PUT and PATCH /todos/{id} */
static void update_todo(nx_req *req, nx_res *res, body_mode mode)
{
    int64_t id;
    todo_input in;
    json_t *todo = NULL;
    if (!path_id(req, res, &id) || !read_body(req, res, mode, &in))
        return;
    int rc = db_update(id, &in, &todo); /* before answer() reads todo */
    answer(res, rc, id, 200, todo);
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
    answer(res, db_delete(id), id, 204, NULL);
}

/* ==== lifecycle ======================================================================= */

/* In each worker: its own connection. A failure is logged and the worker still starts;
 * the todo routes answer 503 and retry the open on each request, rather than the worker
 * exiting in a loop and taking the other plugins' routes with it. */
static int worker_start(nx_plugin *p)
{
    if (db_ready() != DB_OK)
        nx_log_error("todo: cannot open database %s: %s", db_file, db_errmsg);
    return 0;
}

static void worker_stop(nx_plugin *p)
{
    db_close();
}

static bool db_check(const char **why)
{
    if (db_ready() == DB_OK)
        return true;
    *why = "the todo database cannot be opened";
    return false;
}

/*
 * Resolves db_path against the current folder, creates the folders it needs and the
 * database with its table, and closes it again before the workers are forked: an SQLite
 * connection must not cross a fork.
 */
static int open_storage(const char *path)
{
    char file[PATH_MAX];
    if (!path || !*path || strcmp(path, ":memory:") == 0 || strncmp(path, "file:", 5) == 0) {
        nx_log_error("todo: db_path must be a file path that every worker can open, not \"%s\"",
                     path ? path : "");
        return -1;
    }
    if (path[0] == '/') {
        if (snprintf(file, sizeof file, "%s", path) >= (int)sizeof file)
            goto too_long;
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) {
            nx_log_error("todo: db_path %s is relative and the current folder is unknown: %s", path,
                         strerror(errno));
            return -1;
        }
        if (snprintf(file, sizeof file, "%s/%s", cwd, path) >= (int)sizeof file)
            goto too_long;
    }
    if (make_parents(file) != 0) {
        nx_log_error("todo: cannot create the folder of %s: %s", file, strerror(errno));
        return -1;
    }
    sqlite3 *conn = db_connect(file);
    if (!conn) {
        nx_log_error("todo: cannot open database %s: %s", file, db_errmsg);
        return -1;
    }
    sqlite3_close(conn);
    memcpy(db_file, file, sizeof db_file);
    nx_log_info("todo: database %s", db_file);
    return 0;
too_long:
    nx_log_error("todo: db_path is longer than %d bytes", PATH_MAX - 1);
    return -1;
}

static int todo_init(nx_plugin *p)
{
    if (open_storage(nx_plugin_config(p, "db_path")) != 0)
        return -1;
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
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (nx_route(p, routes[i].method, routes[i].pattern, routes[i].fn, NX_ROUTE_DEFAULT) !=
            NX_OK)
            return -1;
    if (nx_on_worker(p, worker_start, worker_stop) != NX_OK ||
        nx_ready_check(p, "todo-db", db_check) != NX_OK)
        return -1;
    return 0;
}

static const nx_plugin_setting settings[] = {
    {.name = "db_path",
     .type = NX_SETTING_STR,
     .def = "data/todo.db",
     .help = "SQLite file shared by the workers; relative to the working folder, missing "
             "folders are created"},
    {.name = NULL},
};

NEXUS_PLUGIN_WITH_SETTINGS("todo", "1.0.0", todo_init, NULL, settings);
