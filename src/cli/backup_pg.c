/*
 * backup_pg.c - PostgreSQL archives: pg_dump --format=custom, pg_restore --list to check one,
 * pg_restore --single-transaction to restore. The tools get the connection through the PG*
 * variables of their environment, never on a command line, which `ps` shows.
 */
#include "cli/backup.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/util.h"

/* The connection settings as the PG* variables libpq's tools read. */
static void pg_environment(const nx_db_settings *s)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", s->port);
    unsetenv("PGHOSTADDR");
    unsetenv("PGSERVICE");
    setenv("PGHOST", s->host, 1);
    setenv("PGPORT", port, 1);
    setenv("PGDATABASE", s->name, 1);
    if (*s->user)
        setenv("PGUSER", s->user, 1);
    if (*s->password)
        setenv("PGPASSWORD", s->password, 1);
    if (*s->application_name)
        setenv("PGAPPNAME", s->application_name, 1);
    static const char *const map[][2] = {
        {"sslmode", "PGSSLMODE"},
        {"sslrootcert", "PGSSLROOTCERT"},
        {"sslcert", "PGSSLCERT"},
        {"sslkey", "PGSSLKEY"},
        {"sslcrl", "PGSSLCRL"},
        {"sslsni", "PGSSLSNI"},
        {"sslcompression", "PGSSLCOMPRESSION"},
        {"requiressl", "PGREQUIRESSL"},
        {"gssencmode", "PGGSSENCMODE"},
        {"channel_binding", "PGCHANNELBINDING"},
        {"connect_timeout", "PGCONNECT_TIMEOUT"},
        {"options", "PGOPTIONS"},
        {"application_name", "PGAPPNAME"},
        {"target_session_attrs", "PGTARGETSESSIONATTRS"},
        {"krbsrvname", "PGKRBSRVNAME"},
        {"passfile", "PGPASSFILE"},
    };
    char *opts = nx_xstrdup(s->options ? s->options : "");
    char *save = NULL;
    for (char *kv = strtok_r(opts, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq)
            continue;
        *eq = '\0';
        if (strcmp(kv, "host") == 0)
            continue; /* a socket folder: already s->host */
        const char *var = NULL;
        for (size_t i = 0; i < NX_ARRAY_LEN(map); i++)
            if (strcmp(kv, map[i][0]) == 0)
                var = map[i][1];
        if (var)
            setenv(var, eq + 1, 1);
        else
            fprintf(stderr,
                    "nexus: warning: database.url option '%s' is not passed to the "
                    "PostgreSQL tools\n",
                    kv);
    }
    free(opts);
}

typedef struct pg_tables {
    const nx_db_settings *s;
    long long n;
    char names[256];
    char err[300];
} pg_tables;

static int count_pg_tables(void *arg)
{
    pg_tables *t = arg;
    nx_arena *a = nx_arena_new(0);
    nx_db_session ss = {.arena = a};
    nx_db_result *r = nx_db_session_query(
        &ss,
        "SELECT count(*), coalesce(string_agg(schemaname || '.' || tablename, ', ' ORDER BY "
        "schemaname, tablename), '') FROM pg_catalog.pg_tables WHERE schemaname NOT IN "
        "('pg_catalog', 'information_schema')",
        NULL, 0);
    int rc = NX_OK;
    if (!r) {
        snprintf(t->err, sizeof(t->err), "%s", ss.err.message);
        rc = NX_ERR;
    } else {
        t->n = nx_db_i64(r, 0, 0);
        const char *names = nx_db_text(r, 0, 1);
        snprintf(t->names, sizeof(t->names), "%s", names ? names : "");
    }
    nx_arena_free(a);
    return rc;
}

int bk_pg_backup(const nx_db_settings *s, const char *tmp)
{
    static const char *const names[] = {"pg_dump"};
    char *tool = bk_find_tool(names, 1);
    if (!tool) {
        bk_fail("pg_dump is not installed (looked in PATH and /usr/lib/postgresql/*/bin); "
                "install postgresql-client");
        return NX_ERR;
    }
    pg_environment(s);
    char file_arg[PATH_MAX + 16];
    snprintf(file_arg, sizeof(file_arg), "--file=%s", tmp);
    char *argv[] = {tool, "--format=custom", "--no-password", file_arg, NULL};
    bk_progress pg;
    bk_progress_init(&pg, "backup");
    bk_watch w = {.grows = tmp};
    int st = bk_run_tool(argv, NULL, -1, &pg, &w);
    if (st == 0) {
        struct stat sb;
        bk_progress_show(&pg, stat(tmp, &sb) == 0 ? (uint64_t)sb.st_size : 0, 0, true);
    } else {
        bk_progress_clear(&pg);
        if (st > 0)
            bk_fail("pg_dump failed (exit status %d): see its message above", st);
    }
    free(tool);
    return st == 0 ? NX_OK : NX_ERR;
}

int bk_pg_verify(const char *archive, int *entries)
{
    static const char *const names[] = {"pg_restore"};
    char *tool = bk_find_tool(names, 1);
    if (!tool) {
        bk_fail("pg_restore is not installed (looked in PATH and /usr/lib/postgresql/*/bin); "
                "install postgresql-client");
        return NX_ERR;
    }
    char *argv[] = {tool, "--list", (char *)archive, NULL};
    FILE *out = tmpfile();
    int st = bk_run_tool(argv, NULL, out ? fileno(out) : -2, NULL, NULL);
    *entries = 0;
    if (out) {
        rewind(out);
        char line[1024];
        while (fgets(line, sizeof(line), out))
            *entries += line[0] >= '0' && line[0] <= '9';
        fclose(out);
    }
    free(tool);
    if (st != 0) {
        if (st > 0)
            bk_fail("%s is not a readable pg_dump archive: pg_restore --list failed (exit status "
                    "%d)",
                    archive, st);
        return NX_ERR;
    }
    return NX_OK;
}

int bk_pg_restore(const nx_db_settings *s, const char *archive, bool force)
{
    static const char *const names[] = {"pg_restore"};
    pg_tables t = {.s = s};
    nx_db_settings cs = *s;
    cs.pool_size = 1;
    cs.max_overflow = 0;
    if (nx_db_run_sync(&cs, count_pg_tables, &t) != NX_OK) {
        bk_fail("cannot reach the PostgreSQL database %s on %s:%d: %s", s->name, s->host, s->port,
                t.err);
        return NX_ERR;
    }
    if (t.n > 0 && !force) {
        bk_fail("the PostgreSQL database %s is not empty (%lld table%s: %s): restoring would "
                "replace its tables; pass --force to restore over it",
                s->name, t.n, t.n == 1 ? "" : "s", t.names);
        return NX_ERR;
    }
    char *tool = bk_find_tool(names, 1);
    if (!tool) {
        bk_fail("pg_restore is not installed (looked in PATH and /usr/lib/postgresql/*/bin); "
                "install postgresql-client");
        return NX_ERR;
    }
    pg_environment(s);
    char db_arg[1024];
    snprintf(db_arg, sizeof(db_arg), "--dbname=%s", s->name);
    char *argv[12];
    int n = 0;
    argv[n++] = tool;
    argv[n++] = db_arg;
    argv[n++] = "--no-password";
    argv[n++] = "--single-transaction";
    argv[n++] = "--exit-on-error";
    argv[n++] = "--no-owner";
    argv[n++] = "--no-privileges";
    if (t.n > 0) {
        argv[n++] = "--clean";
        argv[n++] = "--if-exists";
    }
    argv[n++] = (char *)archive;
    argv[n] = NULL;
    bk_progress pg;
    bk_progress_init(&pg, "restore");
    bk_watch w = {.reads = archive};
    int st = bk_run_tool(argv, NULL, -2, &pg, &w);
    free(tool);
    if (st != 0) {
        bk_progress_clear(&pg);
        if (st > 0)
            bk_fail("pg_restore failed (exit status %d): see its message above; it ran in one "
                    "transaction, so the database is as it was",
                    st);
        return NX_ERR;
    }
    struct stat sb;
    stat(archive, &sb);
    bk_progress_show(&pg, (uint64_t)sb.st_size, (uint64_t)sb.st_size, true);
    return NX_OK;
}
