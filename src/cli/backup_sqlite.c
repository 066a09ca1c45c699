/*
 * backup_sqlite.c - SQLite archives: a copy of the database made with the online backup API
 * while the server runs (a read transaction pins one snapshot; writers carry on), restored
 * the same way into the live file in one write transaction, so a running server's readers
 * see the old database or the new one, never a mix.
 */
#include "cli/backup.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "core/util.h"

/* Pages copied per sqlite3_backup_step: small enough that a writer waits little. */
#define SQLITE_STEP_PAGES 256
/* How long a SQLite step may keep finding the database locked before restore gives up. */
#define SQLITE_BUSY_MS 60000

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/*
 * Copies src into dst with the online backup API, SQLITE_STEP_PAGES at a time, waiting out
 * a lock another connection holds for a while. NX_OK, or NX_ERR with the reason in err.
 */
static int sqlite_copy(sqlite3 *dst, sqlite3 *src, bk_progress *pg, char *err, size_t errlen)
{
    uint64_t page = 4096;
    sqlite3_stmt *ps = NULL;
    if (sqlite3_prepare_v2(src, "PRAGMA page_size", -1, &ps, NULL) == SQLITE_OK &&
        sqlite3_step(ps) == SQLITE_ROW)
        page = (uint64_t)sqlite3_column_int64(ps, 0);
    sqlite3_finalize(ps);
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (!b) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(dst));
        return NX_ERR;
    }
    uint64_t busy_since = 0;
    int rc;
    for (;;) {
        rc = sqlite3_backup_step(b, SQLITE_STEP_PAGES);
        int total = sqlite3_backup_pagecount(b), left = sqlite3_backup_remaining(b);
        if (rc == SQLITE_OK || rc == SQLITE_DONE)
            bk_progress_show(pg, (uint64_t)(total - left) * page, (uint64_t)total * page,
                             rc == SQLITE_DONE);
        if (rc == SQLITE_DONE || bk_interrupted)
            break;
        bool locked = (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED;
        if (locked) {
            uint64_t now = nx_now_ms();
            if (!busy_since)
                busy_since = now;
            if (now - busy_since > SQLITE_BUSY_MS)
                break;
            sleep_ms(10);
            continue;
        }
        if (rc != SQLITE_OK)
            break;
        busy_since = 0;
    }
    int page_size_issue = rc == SQLITE_READONLY;
    sqlite3_backup_finish(b);
    if (rc == SQLITE_DONE)
        return NX_OK;
    if (bk_interrupted)
        snprintf(err, errlen, "interrupted");
    else if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
        snprintf(err, errlen, "the database stayed locked by another writer for %d s",
                 SQLITE_BUSY_MS / 1000);
    else if (page_size_issue)
        snprintf(err, errlen,
                 "%s (the archive's page size differs from the database's, which SQLite "
                 "cannot change in WAL mode: stop the server, move the database file and its "
                 "-wal and -shm files away, and restore again)",
                 sqlite3_errstr(rc));
    else
        snprintf(err, errlen, "%s", sqlite3_errmsg(dst));
    return NX_ERR;
}

int bk_sqlite_backup(const nx_db_settings *s, const char *tmp)
{
    struct stat st;
    if (stat(s->path, &st) != 0) {
        bk_fail("no SQLite database at %s (database.path): %s", s->path, strerror(errno));
        return NX_ERR;
    }
    sqlite3 *src = NULL, *dst = NULL;
    char err[512] = "";
    int rc = NX_ERR;
    if (sqlite3_open_v2(s->path, &src, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        bk_fail("cannot open the SQLite database %s: %s", s->path, sqlite3_errmsg(src));
        goto cleanup;
    }
    sqlite3_busy_timeout(src, 10000);
    /* The read transaction pins one snapshot for the whole copy: the server's writers go
     * on (WAL), and the backup does not restart each time one commits. */
    char *msg = NULL;
    if (sqlite3_exec(src, "BEGIN; SELECT count(*) FROM sqlite_master;", NULL, NULL, &msg) !=
        SQLITE_OK) {
        bk_fail("cannot read the SQLite database %s: %s", s->path, msg ? msg : sqlite3_errmsg(src));
        sqlite3_free(msg);
        goto cleanup;
    }
    if (sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        bk_fail("cannot write %s: %s", tmp, sqlite3_errmsg(dst));
        goto cleanup;
    }
    bk_progress pg;
    bk_progress_init(&pg, "backup");
    if (sqlite_copy(dst, src, &pg, err, sizeof(err)) != NX_OK) {
        bk_progress_clear(&pg);
        if (!bk_interrupted)
            bk_fail("backup of %s failed: %s", s->path, err);
        goto cleanup;
    }
    sqlite3_exec(src, "COMMIT", NULL, NULL, NULL);
    /* The copy keeps the source's WAL mode; an archive is one self-contained file. */
    if (sqlite3_exec(dst, "PRAGMA journal_mode = DELETE", NULL, NULL, &msg) != SQLITE_OK) {
        bk_progress_clear(&pg);
        bk_fail("cannot finish %s: %s", tmp, msg ? msg : sqlite3_errmsg(dst));
        sqlite3_free(msg);
        goto cleanup;
    }
    rc = NX_OK;
cleanup:
    sqlite3_close_v2(dst);
    sqlite3_close_v2(src);
    return rc;
}

/* Opens an archive read-only without ever writing to it or its folder (immutable). */
static int sqlite_open_archive(const char *archive, sqlite3 **db)
{
    char real[PATH_MAX];
    if (!realpath(archive, real))
        snprintf(real, sizeof(real), "%s", archive);
    /* A URI: '%', '?' and '#' in the path are escaped. */
    char uri[3 * PATH_MAX + 32];
    size_t o = (size_t)snprintf(uri, sizeof(uri), "file:");
    for (const char *p = real; *p && o + 4 < sizeof(uri); p++) {
        if (*p == '%' || *p == '?' || *p == '#')
            o += (size_t)snprintf(uri + o, sizeof(uri) - o, "%%%02X", (unsigned char)*p);
        else
            uri[o++] = *p;
    }
    snprintf(uri + o, sizeof(uri) - o, "?immutable=1");
    int rc = sqlite3_open_v2(uri, db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
    if (rc != SQLITE_OK) {
        bk_fail("cannot open %s as a SQLite database: %s", archive,
                *db ? sqlite3_errmsg(*db) : sqlite3_errstr(rc));
        return NX_ERR;
    }
    return NX_OK;
}

/* The user tables of db: how many, and their names (for the message). -1 on error. */
static long long sqlite_tables(sqlite3 *db, char *names, size_t len)
{
    sqlite3_stmt *st = NULL;
    long long n = -1;
    if (sqlite3_prepare_v2(db,
                           "SELECT count(*), coalesce(group_concat(name, ', '), '') FROM "
                           "(SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT "
                           "LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name)",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        n = sqlite3_column_int64(st, 0);
        const unsigned char *t = sqlite3_column_text(st, 1);
        snprintf(names, len, "%s", t ? (const char *)t : "");
    }
    sqlite3_finalize(st);
    return n;
}

int bk_sqlite_verify(const char *archive, char *what, size_t len)
{
    sqlite3 *db = NULL;
    int rc = NX_ERR;
    if (sqlite_open_archive(archive, &db) != NX_OK)
        goto cleanup;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK) {
        bk_fail("%s is not a readable SQLite database: %s", archive, sqlite3_errmsg(db));
        goto cleanup;
    }
    int step = sqlite3_step(st);
    const unsigned char *first = step == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
    if (!first || strcmp((const char *)first, "ok") != 0) {
        bk_fail("%s fails SQLite's integrity check: %s", archive,
                first ? (const char *)first : sqlite3_errmsg(db));
        sqlite3_finalize(st);
        goto cleanup;
    }
    sqlite3_finalize(st);
    char names[256];
    long long n = sqlite_tables(db, names, sizeof(names));
    snprintf(what, len, "a SQLite database, integrity ok, %lld table%s", n, n == 1 ? "" : "s");
    rc = NX_OK;
cleanup:
    sqlite3_close_v2(db);
    return rc;
}

/*
 * Restores into the live file through the backup API: the whole copy is one write
 * transaction on the database, which a running server's readers see commit at once (WAL),
 * and whose writers wait for it (their statements retry on SQLITE_BUSY).
 */
int bk_sqlite_restore(const nx_db_settings *s, const char *archive, bool force)
{
    sqlite3 *src = NULL, *dst = NULL;
    int rc = NX_ERR;
    char err[512];
    if (sqlite_open_archive(archive, &src) != NX_OK)
        goto cleanup;
    if (nx_mkdirs_for(s->path, 0750) != 0) {
        bk_fail("cannot create the folder of %s (database.path): %s", s->path, strerror(errno));
        goto cleanup;
    }
    if (sqlite3_open_v2(s->path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        bk_fail("cannot open the SQLite database %s: %s", s->path, sqlite3_errmsg(dst));
        goto cleanup;
    }
    sqlite3_busy_timeout(dst, 10000);
    char names[256];
    long long n = sqlite_tables(dst, names, sizeof(names));
    if (n < 0) {
        bk_fail("cannot read the SQLite database %s: %s", s->path, sqlite3_errmsg(dst));
        goto cleanup;
    }
    if (n > 0 && !force) {
        bk_fail("the SQLite database %s is not empty (%lld table%s: %s): restoring would replace "
                "it; pass --force to restore over it",
                s->path, n, n == 1 ? "" : "s", names);
        goto cleanup;
    }
    sqlite3_busy_timeout(dst, 0); /* sqlite_copy waits itself, between steps */
    bk_progress pg;
    bk_progress_init(&pg, "restore");
    if (sqlite_copy(dst, src, &pg, err, sizeof(err)) != NX_OK) {
        bk_progress_clear(&pg);
        if (!bk_interrupted)
            bk_fail("restore into %s failed: %s; the database is as it was", s->path, err);
        goto cleanup;
    }
    rc = NX_OK;
cleanup:
    sqlite3_close_v2(dst);
    sqlite3_close_v2(src);
    return rc;
}
