/*
 * migrate.c - the plugins' schema migrations (see migrate.h for the rules).
 *
 * A run has two halves. Outside the database: the migration folders are read, the file for
 * this backend chosen for each number, and every file loaded and checksummed, so a
 * malformed folder is refused before anything runs. Inside (a coroutine of nx_db_run_sync):
 * schema_migrations is created when missing, read, and each pending migration applied in a
 * transaction of its own after taking the lock and checking the table again: a replica that
 * lost the race finds the migration recorded and moves on.
 *
 * The migrations run with no statement timeout (database.statement_timeout is for requests:
 * building an index may take longer), and a replica waits for the lock as long as another
 * one holds it, which is as long as that one's migration takes.
 */
#include "db/migrate.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include <nexus/arena.h>
#include <nexus/log.h>

#include "core/arena.h"
#include "core/util.h"
#include "plugin/loader.h"

/* The PostgreSQL advisory lock that serializes migrations: "NXMIGRAT" as a number. */
#define PG_LOCK_KEY INT64_C(0x4e584d4947524154)
/* The MySQL named lock, and how long a replica waits for it (seconds). */
#define MYSQL_LOCK_NAME "nexus.schema_migrations"
#define MYSQL_LOCK_WAIT "86400"
/* How long a new SQLite file may stay locked by other replicas setting it up. */
#define SQLITE_WAL_WAIT_MS 60000
/* A migration file larger than this is refused: it is surely not a schema change. */
#define FILE_MAX (64u << 20)

static const char *const backends[] = {"sqlite", "postgresql", "mysql"};

/* One migration: its file (when there is one) and its row (when applied). */
typedef struct mig {
    char *plugin;
    size_t order; /* index of its plugin in the sources; n for plugins not loaded */
    int64_t version;
    char vtext[24]; /* the number as the file writes it ("0001") */
    char *name;
    char *file; /* the file chosen for this backend; NULL when recorded but not found */
    char *sql;
    char sum[65]; /* SHA-256 of the file, hex */
    bool applied;
    char *db_sum;
    int64_t applied_at; /* Unix time */
} mig;

typedef struct run {
    const nx_db_settings *s;
    nx_migrate_out out;
    const nx_migrate_source *src;
    size_t nsrc;
    mig *m;
    size_t n, cap;
    int applied, raced, before; /* applied by this run, by another process meanwhile, earlier */
} run;

/* ---- messages ---------------------------------------------------------------------------- */

static void say(const run *r, nx_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(const run *r, nx_log_level level, const char *fmt, ...)
{
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (r->out == NX_MIGRATE_LOG)
        nx_log_at(level, __FILE__, __LINE__, "%s", msg);
    else if (level >= NX_LOG_WARN)
        fprintf(stderr, "nexus: %s%s\n", level == NX_LOG_WARN ? "warning: " : "", msg);
    else {
        printf("%s\n", msg);
        fflush(stdout); /* in order with stderr, also into a pipe */
    }
}

static const char *backend_name(const nx_db_settings *s)
{
    return backends[s->kind == NX_DBK_POSTGRESQL ? 1 : s->kind == NX_DBK_MYSQL ? 2 : 0];
}

/* ---- the files ---------------------------------------------------------------------------- */

static void sha256_hex(const void *p, size_t n, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    if (EVP_Digest(p, n, md, &len, EVP_sha256(), NULL) != 1)
        nx_oom();
    for (unsigned i = 0; i < len && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    out[64] = '\0';
}

/* Reads a whole file into a NUL-terminated string; NULL with errno (EFBIG, EINVAL). */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = nx_xmalloc(cap + 1);
    for (;;) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap)
            break;
        if (cap >= FILE_MAX) {
            free(buf);
            fclose(f);
            errno = EFBIG;
            return NULL;
        }
        cap *= 2;
        buf = nx_xrealloc(buf, cap + 1);
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    if (memchr(buf, '\0', n)) {
        free(buf);
        errno = EINVAL;
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* A file of a migrations folder, as its name describes it. */
typedef struct entry {
    int64_t version;
    char vtext[24];
    char *name;
    const char *backend; /* NULL: for every backend */
    char *fname;
} entry;

/*
 * Reads "0002_add_index.postgresql.sql": number, name, backend (NULL for a plain .sql).
 * NX_ERR with the reason: the name must be NUMBER_NAME[.BACKEND].sql with NAME made of
 * letters, digits, '_' and '-', so that a typo in a backend does not pass for a name.
 */
static int parse_fname(const char *fname, entry *e, char *why, size_t whylen)
{
    size_t len = strlen(fname);
    size_t digits = strspn(fname, "0123456789");
    if (digits == 0 || digits >= sizeof(e->vtext) - 5 || fname[digits] != '_') {
        snprintf(why, whylen, "the name must start with a number and '_' (0001_create_items.sql)");
        return NX_ERR;
    }
    memcpy(e->vtext, fname, digits);
    e->vtext[digits] = '\0';
    int64_t v;
    if (nx_parse_i64(fname, digits, &v) != NX_OK || v < 0 || digits > 18) {
        snprintf(why, whylen, "the number is too large");
        return NX_ERR;
    }
    e->version = v;
    const char *body = fname + digits + 1;
    size_t blen = len - digits - 1 - 4; /* without ".sql" */
    const char *dot = memchr(body, '.', blen);
    e->backend = NULL;
    size_t nlen = blen;
    if (dot) {
        nlen = (size_t)(dot - body);
        size_t klen = blen - nlen - 1;
        for (size_t i = 0; i < NX_ARRAY_LEN(backends); i++)
            if (strlen(backends[i]) == klen && memcmp(dot + 1, backends[i], klen) == 0)
                e->backend = backends[i];
        if (!e->backend) {
            snprintf(why, whylen, "'%.*s' is not a backend (sqlite, postgresql or mysql)",
                     (int)klen, dot + 1);
            return NX_ERR;
        }
    }
    if (nlen == 0) {
        snprintf(why, whylen, "the name after the number is empty");
        return NX_ERR;
    }
    for (size_t i = 0; i < nlen; i++) {
        if (!isalnum((unsigned char)body[i]) && body[i] != '_' && body[i] != '-') {
            snprintf(why, whylen, "the name may hold letters, digits, '_' and '-' only");
            return NX_ERR;
        }
    }
    e->name = nx_xmalloc(nlen + 1);
    memcpy(e->name, body, nlen);
    e->name[nlen] = '\0';
    return NX_OK;
}

static int cmp_entry(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->version != y->version)
        return x->version < y->version ? -1 : 1;
    return strcmp(x->fname, y->fname);
}

static mig *add_mig(run *r)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->m = nx_xrealloc(r->m, r->cap * sizeof(*r->m));
    }
    mig *m = &r->m[r->n++];
    memset(m, 0, sizeof(*m));
    return m;
}

/*
 * Reads one plugin's folder into r: per number, the file for this backend (a variant wins
 * over the plain file). A missing folder means no migrations. NX_ERR (reported) for a
 * malformed name, two names for one number, or an unreadable file.
 */
static int read_source(run *r, size_t idx)
{
    const nx_migrate_source *src = &r->src[idx];
    DIR *d = opendir(src->dir);
    if (!d) {
        if (errno == ENOENT || errno == ENOTDIR)
            return NX_OK;
        say(r, NX_LOG_ERROR, "plugin %s: cannot read its migrations folder %s: %s", src->plugin,
            src->dir, strerror(errno));
        return NX_ERR;
    }
    entry *es = NULL;
    size_t ne = 0;
    int rc = NX_OK;
    struct dirent *de;
    while (rc == NX_OK && (de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len < 5 || strcmp(de->d_name + len - 4, ".sql") != 0)
            continue;
        entry e = {0};
        char why[160];
        if (parse_fname(de->d_name, &e, why, sizeof(why)) != NX_OK) {
            say(r, NX_LOG_ERROR, "plugin %s: migration %s/%s: %s", src->plugin, src->dir,
                de->d_name, why);
            rc = NX_ERR;
            break;
        }
        e.fname = nx_xstrdup(de->d_name);
        es = nx_xrealloc(es, (ne + 1) * sizeof(*es));
        es[ne++] = e;
    }
    closedir(d);
    if (ne)
        qsort(es, ne, sizeof(*es), cmp_entry);
    const char *mine = backend_name(r->s);
    for (size_t i = 0; rc == NX_OK && i < ne;) {
        size_t j = i;
        const entry *pick = NULL, *plain = NULL;
        for (; j < ne && es[j].version == es[i].version; j++) {
            if (strcmp(es[j].name, es[i].name) != 0) {
                say(r, NX_LOG_ERROR,
                    "plugin %s: migrations %s and %s in %s have the same number; give each "
                    "migration a number of its own (variants for a backend keep the name: "
                    "%s_%s.postgresql.sql)",
                    src->plugin, es[i].fname, es[j].fname, src->dir, es[i].vtext, es[i].name);
                rc = NX_ERR;
                break;
            }
            if (!es[j].backend)
                plain = &es[j];
            else if (strcmp(es[j].backend, mine) == 0)
                pick = &es[j];
        }
        if (rc != NX_OK)
            break;
        if (!pick)
            pick = plain; /* NULL: only other backends have this migration */
        if (pick) {
            mig *m = add_mig(r);
            m->plugin = nx_xstrdup(src->plugin);
            m->order = idx;
            m->version = pick->version;
            snprintf(m->vtext, sizeof(m->vtext), "%s", pick->vtext);
            m->name = nx_xstrdup(pick->name);
            size_t flen = strlen(src->dir) + strlen(pick->fname) + 2;
            m->file = nx_xmalloc(flen);
            snprintf(m->file, flen, "%s/%s", src->dir, pick->fname);
            size_t len = 0;
            m->sql = read_file(m->file, &len);
            if (!m->sql) {
                say(r, NX_LOG_ERROR, "plugin %s: migration %s: %s", src->plugin, m->file,
                    errno == EINVAL  ? "the file holds a NUL byte: is it SQL text?"
                    : errno == EFBIG ? "the file is larger than 64 MiB"
                                     : strerror(errno));
                rc = NX_ERR;
                break;
            }
            sha256_hex(m->sql, len, m->sum);
        }
        i = j;
    }
    for (size_t i = 0; i < ne; i++) {
        free(es[i].name);
        free(es[i].fname);
    }
    free(es);
    return rc;
}

static void free_run(run *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->m[i].plugin);
        free(r->m[i].name);
        free(r->m[i].file);
        free(r->m[i].sql);
        free(r->m[i].db_sum);
    }
    free(r->m);
}

/* ---- the database ---------------------------------------------------------------------- */

static const char *sql_table_exists(const nx_db_settings *s)
{
    switch (s->kind) {
    case NX_DBK_POSTGRESQL: return "SELECT 1 WHERE to_regclass('schema_migrations') IS NOT NULL";
    case NX_DBK_MYSQL:
        return "SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() AND "
               "table_name = 'schema_migrations'";
    default:
        return "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'";
    }
}

static const char *sql_create(const nx_db_settings *s)
{
    switch (s->kind) {
    case NX_DBK_POSTGRESQL:
        return "CREATE TABLE IF NOT EXISTS schema_migrations (plugin TEXT NOT NULL, version "
               "BIGINT NOT NULL, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at "
               "TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (plugin, version))";
    case NX_DBK_MYSQL:
        return "CREATE TABLE IF NOT EXISTS schema_migrations (plugin VARCHAR(191) NOT NULL, "
               "version BIGINT NOT NULL, name VARCHAR(255) NOT NULL, checksum CHAR(64) NOT "
               "NULL, applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY "
               "(plugin, version))";
    default:
        return "CREATE TABLE IF NOT EXISTS schema_migrations (plugin TEXT NOT NULL, version "
               "INTEGER NOT NULL, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TEXT "
               "NOT NULL DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (plugin, version))";
    }
}

static const char *sql_applied(const nx_db_settings *s)
{
    switch (s->kind) {
    case NX_DBK_POSTGRESQL:
        return "SELECT plugin, version, name, checksum, CAST(floor(extract(epoch FROM applied_at)) "
               "AS "
               "BIGINT) FROM schema_migrations";
    case NX_DBK_MYSQL:
        return "SELECT plugin, version, name, checksum, UNIX_TIMESTAMP(applied_at) FROM "
               "schema_migrations";
    default:
        return "SELECT plugin, version, name, checksum, CAST(strftime('%s', applied_at) AS "
               "INTEGER) FROM schema_migrations";
    }
}

static const char sql_recheck[] =
    "SELECT checksum FROM schema_migrations WHERE plugin = $1 AND version = $2";
static const char sql_record[] =
    "INSERT INTO schema_migrations (plugin, version, name, checksum) VALUES ($1, $2, $3, $4)";

/* "message (SQLSTATE x)" of the session's last error. */
static const char *db_error(const nx_db_session *ss, char *buf, size_t len)
{
    const nx_db_error *e = &ss->err;
    if (e->sqlstate[0])
        snprintf(buf, len, "%s (SQLSTATE %s)", e->message, e->sqlstate);
    else
        snprintf(buf, len, "%s", e->message);
    return buf;
}

static mig *find_mig(run *r, const char *plugin, int64_t version)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->m[i].version == version && strcmp(r->m[i].plugin, plugin) == 0)
            return &r->m[i];
    return NULL;
}

/*
 * The run's first statement, which opens its connection. SQLite: a connection opened just
 * as another process closes the file's last one (and checkpoints it) can find it locked
 * while reading the schema, which the driver does not retry; the wait here is short, and
 * nothing else runs in this process meanwhile.
 */
static nx_db_result *first_query(run *r, nx_db_session *ss, const char *sql)
{
    uint64_t until = nx_now_ms() + SQLITE_WAL_WAIT_MS;
    for (;;) {
        nx_db_result *res = nx_db_session_query(ss, sql, NULL, 0);
        if (res || r->s->kind != NX_DBK_SQLITE || ss->err.kind != NX_DB_UNAVAILABLE ||
            !strstr(ss->err.message, "locked") || nx_now_ms() >= until)
            return res;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Marks the recorded migrations; a row with no file becomes an entry of its own. */
static int read_applied(run *r, nx_db_session *ss)
{
    nx_db_result *res = first_query(r, ss, sql_table_exists(r->s));
    if (!res)
        return NX_ERR;
    if (nx_db_rows(res) == 0)
        return NX_OK; /* nothing applied yet */
    res = nx_db_session_query(ss, sql_applied(r->s), NULL, 0);
    if (!res)
        return NX_ERR;
    for (size_t i = 0; i < nx_db_rows(res); i++) {
        const char *plugin = nx_db_text(res, i, 0);
        int64_t version = nx_db_i64(res, i, 1);
        mig *m = find_mig(r, plugin ? plugin : "", version);
        if (!m) {
            m = add_mig(r);
            m->plugin = nx_xstrdup(plugin ? plugin : "");
            m->order = r->nsrc;
            for (size_t k = 0; k < r->nsrc; k++)
                if (strcmp(r->src[k].plugin, m->plugin) == 0)
                    m->order = k;
            m->version = version;
            snprintf(m->vtext, sizeof(m->vtext), "%04" PRId64, version);
            const char *name = nx_db_text(res, i, 2);
            m->name = nx_xstrdup(name ? name : "");
        }
        m->applied = true;
        const char *sum = nx_db_text(res, i, 3);
        m->db_sum = nx_xstrdup(sum ? sum : "");
        m->applied_at = nx_db_i64(res, i, 4);
    }
    return NX_OK;
}

static int cmp_mig(const void *a, const void *b)
{
    const mig *x = a, *y = b;
    if (x->order != y->order)
        return x->order < y->order ? -1 : 1;
    int c = strcmp(x->plugin, y->plugin);
    if (c)
        return c;
    return x->version < y->version ? -1 : x->version > y->version;
}

static bool changed(const mig *m)
{
    return m->applied && m->file && m->db_sum && strcmp(m->db_sum, m->sum) != 0;
}

static void warn_changed(const run *r, const mig *m)
{
    say(r, NX_LOG_WARN,
        "plugin %s: migration %s changed since it was applied (checksum %.12s..., applied "
        "%.12s...); applied migrations are never run again: put the change in a new one",
        m->plugin, m->file, m->sum, m->db_sum);
}

/* The failure of migration m, with the database's error, after its rollback. */
static int report_failure(run *r, const mig *m, const char *what, const char *dberr)
{
    say(r, NX_LOG_ERROR, "migration failed: plugin %s, file %s: %s%s; %s", m->plugin, m->file, what,
        dberr,
        r->s->kind == NX_DBK_MYSQL
            ? "statements of it before the failing one may remain (MySQL commits DDL "
              "implicitly) and it is not recorded; the migrations after it were not run"
            : "it was rolled back, and the migrations after it were not run");
    return NX_ERR;
}

/*
 * Applies m in a transaction, unless another process recorded it meanwhile. PostgreSQL and
 * SQLite take their lock inside the transaction (MySQL's is held for the whole run), then
 * look at the table again.
 */
static int apply_one(run *r, nx_db_session *ss, mig *m)
{
    char dberr[512];
    uint64_t t0 = nx_now_ms();
    bool mysql = r->s->kind == NX_DBK_MYSQL;
    nx_db_value key[] = {NX_DB_STR(m->plugin), NX_DB_I64(m->version)};
    if (mysql) {
        /* No transaction around the re-check: under REPEATABLE READ it would read the
         * snapshot of the transaction's first statement. The named lock is held. */
        nx_db_result *res = nx_db_session_query(ss, sql_recheck, key, 2);
        if (!res)
            return report_failure(r, m, "", db_error(ss, dberr, sizeof(dberr)));
        if (nx_db_rows(res)) {
            m->applied = true;
            r->raced++;
            say(r, NX_LOG_INFO, "%s: %s_%s was applied by another process meanwhile", m->plugin,
                m->vtext, m->name);
            return NX_OK;
        }
        /* The session's connection is held for the lock: BEGIN and COMMIT are sent as
         * statements, not through nx_db_session_begin, whose commit would let it go. */
        if (nx_db_session_script(ss, "BEGIN") != NX_OK)
            return report_failure(r, m, "BEGIN: ", db_error(ss, dberr, sizeof(dberr)));
    } else {
        if (nx_db_session_begin(ss) != NX_OK)
            return report_failure(r, m, "BEGIN: ", db_error(ss, dberr, sizeof(dberr)));
        if (r->s->kind == NX_DBK_POSTGRESQL) {
            /* READ COMMITTED whatever the server's default: the re-check below must see
             * what the lock's previous holder committed, not a snapshot from before it. */
            nx_db_value lock = NX_DB_I64(PG_LOCK_KEY);
            if (nx_db_session_script(ss, "SET TRANSACTION ISOLATION LEVEL READ COMMITTED") !=
                    NX_OK ||
                !nx_db_session_query(ss, "SELECT pg_advisory_xact_lock($1)", &lock, 1)) {
                db_error(ss, dberr, sizeof(dberr));
                nx_db_session_rollback(ss);
                return report_failure(r, m, "taking the migration lock: ", dberr);
            }
        }
        nx_db_result *res = nx_db_session_query(ss, sql_recheck, key, 2);
        if (!res) {
            db_error(ss, dberr, sizeof(dberr));
            nx_db_session_rollback(ss);
            return report_failure(r, m, "", dberr);
        }
        if (nx_db_rows(res)) {
            nx_db_session_rollback(ss);
            m->applied = true;
            r->raced++;
            say(r, NX_LOG_INFO, "%s: %s_%s was applied by another process meanwhile", m->plugin,
                m->vtext, m->name);
            return NX_OK;
        }
    }

    nx_db_value row[] = {NX_DB_STR(m->plugin), NX_DB_I64(m->version), NX_DB_STR(m->name),
                         NX_DB_STR(m->sum)};
    const char *what = "";
    int rc = nx_db_session_script(ss, m->sql);
    if (rc == NX_OK) {
        what = "recording it in schema_migrations: ";
        rc = nx_db_session_query(ss, sql_record, row, 4) ? NX_OK : NX_ERR;
    }
    if (rc != NX_OK) {
        db_error(ss, dberr, sizeof(dberr));
        if (mysql)
            nx_db_session_script(ss, "ROLLBACK");
        else
            nx_db_session_rollback(ss);
        return report_failure(r, m, what, dberr);
    }
    rc = mysql ? nx_db_session_script(ss, "COMMIT") : nx_db_session_commit(ss);
    if (rc != NX_OK)
        return report_failure(r, m, "COMMIT: ", db_error(ss, dberr, sizeof(dberr)));
    m->applied = true;
    r->applied++;
    say(r, NX_LOG_INFO, "%s: applied %s_%s (%llu ms)", m->plugin, m->vtext, m->name,
        (unsigned long long)(nx_now_ms() - t0));
    return NX_OK;
}

/* Creates schema_migrations when it is missing (under the lock: PostgreSQL's
 * CREATE TABLE IF NOT EXISTS is not safe against a concurrent one). */
static int ensure_table(run *r, nx_db_session *ss)
{
    nx_db_result *res = first_query(r, ss, sql_table_exists(r->s));
    if (!res)
        return NX_ERR;
    if (nx_db_rows(res))
        return NX_OK;
    if (r->s->kind != NX_DBK_POSTGRESQL)
        return nx_db_session_script(ss, sql_create(r->s));
    nx_db_value lock = NX_DB_I64(PG_LOCK_KEY);
    if (nx_db_session_begin(ss) != NX_OK)
        return NX_ERR;
    if (!nx_db_session_query(ss, "SELECT pg_advisory_xact_lock($1)", &lock, 1) ||
        nx_db_session_script(ss, sql_create(r->s)) != NX_OK) {
        nx_db_error keep = ss->err;
        nx_db_session_rollback(ss);
        ss->err = keep;
        return NX_ERR;
    }
    return nx_db_session_commit(ss);
}

/* MySQL: the named lock for the whole run, on the session's held connection. */
static int mysql_lock(run *r, nx_db_session *ss)
{
    char dberr[512];
    if (nx_db_session_hold(ss) != NX_OK) {
        say(r, NX_LOG_ERROR, "migrations: cannot reach the database: %s",
            db_error(ss, dberr, sizeof(dberr)));
        return NX_ERR;
    }
    nx_db_result *res = nx_db_session_query(
        ss, "SELECT GET_LOCK('" MYSQL_LOCK_NAME "', " MYSQL_LOCK_WAIT ")", NULL, 0);
    if (!res || nx_db_i64(res, 0, 0) != 1) {
        say(r, NX_LOG_ERROR, "migrations: cannot take the lock %s: %s", MYSQL_LOCK_NAME,
            res ? "another process held it for a whole day" : db_error(ss, dberr, sizeof(dberr)));
        nx_db_session_unhold(ss);
        return NX_ERR;
    }
    return NX_OK;
}

static void mysql_unlock(nx_db_session *ss)
{
    nx_db_session_query(ss, "SELECT RELEASE_LOCK('" MYSQL_LOCK_NAME "')", NULL, 0);
    nx_db_session_unhold(ss);
}

static int db_apply(void *arg)
{
    run *r = arg;
    char dberr[512];
    nx_arena *a = nx_arena_new(0);
    nx_db_session ss = {.arena = a};
    int rc = NX_OK;
    bool mysql = r->s->kind == NX_DBK_MYSQL;
    if (mysql && mysql_lock(r, &ss) != NX_OK) {
        nx_arena_free(a);
        return NX_MIGRATE_FAILED;
    }
    if (ensure_table(r, &ss) != NX_OK || read_applied(r, &ss) != NX_OK) {
        say(r, NX_LOG_ERROR, "migrations: cannot read or create schema_migrations: %s",
            db_error(&ss, dberr, sizeof(dberr)));
        rc = NX_ERR;
    }
    if (rc == NX_OK && r->n)
        qsort(r->m, r->n, sizeof(*r->m), cmp_mig);
    for (size_t i = 0; rc == NX_OK && i < r->n; i++) {
        mig *m = &r->m[i];
        if (m->applied) {
            r->before++;
            if (changed(m))
                warn_changed(r, m);
            continue;
        }
        nx_arena_reset(a);
        rc = apply_one(r, &ss, m);
    }
    if (mysql)
        mysql_unlock(&ss);
    nx_arena_free(a);
    return rc == NX_OK ? NX_MIGRATE_OK : NX_MIGRATE_FAILED;
}

/* A copy of the settings for migrations: no statement timeout. */
static nx_db_settings migration_settings(const nx_db_settings *s)
{
    nx_db_settings c = *s;
    c.statement_timeout_ms = 0;
    c.pool_size = 1;
    c.max_overflow = 0;
    return c;
}

/*
 * SQLite: puts the file in WAL mode before the run, waiting out other processes' locks.
 * Replicas starting together on a new file would otherwise meet each other's exclusive
 * locks while the file is still in rollback mode, and the driver's connect gives up on a
 * lock that comes while it reads the schema. The master and the CLI may block here.
 */
static void sqlite_wal(const nx_db_settings *s)
{
    if (s->kind != NX_DBK_SQLITE || strcmp(s->path, ":memory:") == 0)
        return;
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(s->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) ==
        SQLITE_OK) {
        sqlite3_busy_timeout(db, SQLITE_WAL_WAIT_MS);
        sqlite3_exec(db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
    }
    sqlite3_close_v2(db); /* a failure here is reported by the run itself */
}

static int read_sources(run *r)
{
    for (size_t i = 0; i < r->nsrc; i++)
        if (read_source(r, i) != NX_OK)
            return NX_ERR;
    return NX_OK;
}

int nx_migrate_apply(const nx_db_settings *s, const nx_migrate_source *src, size_t n,
                     nx_migrate_out out)
{
    nx_db_settings ms = migration_settings(s);
    run r = {.s = &ms, .out = out, .src = src, .nsrc = n};
    int rc = NX_MIGRATE_FAILED;
    if (read_sources(&r) == NX_OK) {
        sqlite_wal(&ms);
        rc = nx_db_run_sync(&ms, db_apply, &r) == NX_MIGRATE_OK ? NX_MIGRATE_OK : NX_MIGRATE_FAILED;
        size_t pending = 0;
        for (size_t i = 0; i < r.n; i++)
            pending += r.m[i].file && !r.m[i].applied;
        if (rc == NX_MIGRATE_OK && r.applied == 0)
            say(&r, NX_LOG_INFO, "migrations: the database is up to date (%d applied before%s)",
                r.before + r.raced, r.raced ? ", some of them by another process just now" : "");
        else if (rc == NX_MIGRATE_OK)
            say(&r, NX_LOG_INFO, "migrations: %d applied; the database is up to date", r.applied);
        else if (r.applied)
            say(&r, NX_LOG_INFO, "migrations: %d applied before the failure, %zu pending",
                r.applied, pending);
    }
    free_run(&r);
    return rc;
}

/* ---- status ------------------------------------------------------------------------------ */

static int db_status(void *arg)
{
    run *r = arg;
    char dberr[512];
    nx_arena *a = nx_arena_new(0);
    nx_db_session ss = {.arena = a};
    int rc = NX_MIGRATE_OK;
    if (read_applied(r, &ss) != NX_OK) {
        say(r, NX_LOG_ERROR, "migrations: cannot read schema_migrations: %s",
            db_error(&ss, dberr, sizeof(dberr)));
        rc = NX_MIGRATE_FAILED;
    }
    nx_arena_free(a);
    return rc;
}

static const char *state_of(const mig *m)
{
    if (!m->applied)
        return "pending";
    if (!m->file)
        return "missing";
    return changed(m) ? "changed" : "applied";
}

int nx_migrate_status(const nx_db_settings *s, const nx_migrate_source *src, size_t n)
{
    nx_db_settings ms = migration_settings(s);
    run r = {.s = &ms, .out = NX_MIGRATE_STDIO, .src = src, .nsrc = n};
    int rc = NX_MIGRATE_FAILED;
    if (read_sources(&r) == NX_OK && nx_db_run_sync(&ms, db_status, &r) == NX_MIGRATE_OK) {
        rc = NX_MIGRATE_OK;
        if (r.n)
            qsort(r.m, r.n, sizeof(*r.m), cmp_mig);
        int wp = 6, wn = 4;
        for (size_t i = 0; i < r.n; i++) {
            int lp = (int)strlen(r.m[i].plugin), ln = (int)strlen(r.m[i].name);
            wp = lp > wp ? lp : wp;
            wn = ln > wn ? ln : wn;
        }
        printf("%-*s  %-7s  %-*s  %-8s %s\n", wp, "PLUGIN", "VERSION", wn, "NAME", "STATE",
               "APPLIED AT");
        size_t applied = 0, pending = 0;
        for (size_t i = 0; i < r.n; i++) {
            const mig *m = &r.m[i];
            char at[32] = "";
            if (m->applied) {
                time_t t = (time_t)m->applied_at;
                struct tm tm;
                if (gmtime_r(&t, &tm))
                    strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);
                applied++;
            } else {
                pending++;
            }
            printf("%-*s  %-7s  %-*s  %-8s %s\n", wp, m->plugin, m->vtext, wn, m->name, state_of(m),
                   at);
        }
        printf("%zu applied, %zu pending (%s database)\n", applied, pending, backend_name(s));
        for (size_t i = 0; i < r.n; i++) {
            if (changed(&r.m[i]))
                warn_changed(&r, &r.m[i]);
            else if (r.m[i].applied && !r.m[i].file)
                say(&r, NX_LOG_WARN,
                    "plugin %s: migration %s_%s is recorded as applied, but no file of it "
                    "was found%s",
                    r.m[i].plugin, r.m[i].vtext, r.m[i].name,
                    r.m[i].order == r.nsrc ? " (the plugin is not loaded)" : "");
        }
    }
    free_run(&r);
    return rc;
}

/* ---- the loaded plugins ------------------------------------------------------------------ */

typedef struct collect {
    nx_migrate_source *src;
    size_t n;
} collect;

static void collect_one(const nx_plugin *p, void *arg)
{
    collect *c = arg;
    if (strcmp(nx_plugin_state_name(p, NULL), "loaded") != 0)
        return;
    const char *path = nx_plugin_path(p);
    const char *slash = strrchr(path, '/');
    size_t dlen = slash ? (size_t)(slash - path) : 1;
    const char *name = nx_plugin_name(p);
    size_t len = dlen + strlen(name) + sizeof("//migrations");
    char *dir = nx_xmalloc(len);
    snprintf(dir, len, "%.*s/%s/migrations", (int)dlen, slash ? path : ".", name);
    c->src = nx_xrealloc(c->src, (c->n + 1) * sizeof(*c->src));
    c->src[c->n++] = (nx_migrate_source){.plugin = name, .dir = dir};
}

nx_migrate_source *nx_migrate_sources_loaded(size_t *n)
{
    collect c = {0};
    nx_plugins_each(collect_one, &c);
    *n = c.n;
    return c.src;
}

void nx_migrate_sources_free(nx_migrate_source *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(src[i].dir);
    free(src);
}

int nx_migrate_at_start(const nx_db_settings *s)
{
    size_t n = 0;
    nx_migrate_source *src = nx_migrate_sources_loaded(&n);
    nx_log_info("database.auto_migrate: applying the plugins' pending migrations (%s)",
                backend_name(s));
    int rc = nx_migrate_apply(s, src, n, NX_MIGRATE_LOG);
    nx_migrate_sources_free(src, n);
    return rc;
}
