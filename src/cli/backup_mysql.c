/*
 * backup_mysql.c - MySQL and MariaDB archives: the dump tool (--single-transaction) and the
 * client, MariaDB's names first. The connection goes in an option file readable only by us,
 * never on a command line, which `ps` shows.
 */
#include "cli/backup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Appends "key=value" to an option file, quoted as the MySQL option parser reads it. */
static void option_line(FILE *f, const char *key, const char *value)
{
    fprintf(f, "%s=\"", key);
    for (const char *p = value; *p; p++) {
        if (*p == '\\' || *p == '"')
            fputc('\\', f);
        fputc(*p, f);
    }
    fputs("\"\n", f);
}

/* An option file with the connection, mode 0600, for --defaults-extra-file; the caller
 * unlinks it. NX_ERR when it cannot be written. */
static int mysql_options(const nx_db_settings *s, char *path, size_t len)
{
    const char *dir = getenv("TMPDIR");
    snprintf(path, len, "%s/nexus-mysql-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        bk_fail("cannot create a temporary option file in %s: %s", dir && *dir ? dir : "/tmp",
                strerror(errno));
        return NX_ERR;
    }
    FILE *f = fdopen(fd, "w");
    fprintf(f, "[client]\n");
    if (s->host[0] == '/') {
        option_line(f, "socket", s->host);
    } else {
        option_line(f, "host", s->host);
        fprintf(f, "port=%d\n", s->port);
    }
    if (*s->user)
        option_line(f, "user", s->user);
    if (*s->password)
        option_line(f, "password", s->password);
    if (fclose(f) != 0) {
        bk_fail("cannot write %s: %s", path, strerror(errno));
        unlink(path);
        return NX_ERR;
    }
    return NX_OK;
}

static char *mysql_tool(bool dump)
{
    static const char *const dumps[] = {"mariadb-dump", "mysqldump"};
    static const char *const clients[] = {"mariadb", "mysql"};
    char *t = bk_find_tool(dump ? dumps : clients, 2);
    if (!t)
        bk_fail("%s is not installed; install mariadb-client (or mysql-client)",
                dump ? "mariadb-dump (or mysqldump)" : "mariadb (or mysql)");
    return t;
}

int bk_mysql_backup(const nx_db_settings *s, const char *tmp)
{
    char *tool = mysql_tool(true);
    if (!tool)
        return NX_ERR;
    char cnf[PATH_MAX];
    if (mysql_options(s, cnf, sizeof(cnf)) != NX_OK) {
        free(tool);
        return NX_ERR;
    }
    char defaults[PATH_MAX + 32], result[PATH_MAX + 32];
    snprintf(defaults, sizeof(defaults), "--defaults-extra-file=%s", cnf);
    snprintf(result, sizeof(result), "--result-file=%s", tmp);
    /* No --databases: the dump names no database, so it restores into the configured one,
     * whatever the name of the one it came from. */
    char *argv[] = {tool,         defaults,     "--single-transaction", "--routines",
                    "--triggers", "--hex-blob", "--no-tablespaces",     result,
                    s->name,      NULL};
    bk_progress pg;
    bk_progress_init(&pg, "backup");
    bk_watch w = {.grows = tmp};
    int st = bk_run_tool(argv, NULL, -1, &pg, &w);
    unlink(cnf);
    free(tool);
    if (st != 0) {
        bk_progress_clear(&pg);
        if (st > 0)
            bk_fail("%s failed (exit status %d): see its message above", argv[0], st);
        return NX_ERR;
    }
    struct stat sb;
    bk_progress_show(&pg, stat(tmp, &sb) == 0 ? (uint64_t)sb.st_size : 0, 0, true);
    return NX_OK;
}

int bk_mysql_verify(const char *archive)
{
    FILE *f = fopen(archive, "rb");
    if (!f) {
        bk_fail("cannot read %s: %s", archive, strerror(errno));
        return NX_ERR;
    }
    char tail[512];
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size > (long)sizeof(tail) - 1 ? size - (long)sizeof(tail) + 1 : 0, SEEK_SET);
    size_t n = fread(tail, 1, sizeof(tail) - 1, f);
    fclose(f);
    tail[n] = '\0';
    if (!strstr(tail, "-- Dump completed")) {
        bk_fail("%s is an incomplete MySQL dump: it does not end with \"-- Dump completed\"",
                archive);
        return NX_ERR;
    }
    return NX_OK;
}

int bk_mysql_restore(const nx_db_settings *s, const char *archive, bool force)
{
    char *tool = mysql_tool(false);
    if (!tool)
        return NX_ERR;
    char cnf[PATH_MAX];
    if (mysql_options(s, cnf, sizeof(cnf)) != NX_OK) {
        free(tool);
        return NX_ERR;
    }
    char defaults[PATH_MAX + 32];
    snprintf(defaults, sizeof(defaults), "--defaults-extra-file=%s", cnf);
    int rc = NX_ERR;
    FILE *out = tmpfile();
    char *count[] = {tool,
                     defaults,
                     "--batch",
                     "--skip-column-names",
                     "--execute=SELECT COUNT(*), COALESCE(GROUP_CONCAT(table_name ORDER BY "
                     "table_name SEPARATOR ', '), '') FROM information_schema.tables WHERE "
                     "table_schema = DATABASE()",
                     s->name,
                     NULL};
    int st = out ? bk_run_tool(count, NULL, fileno(out), NULL, NULL) : -1;
    long long ntables = -1;
    char names[256] = "";
    if (st == 0) {
        rewind(out);
        char line[1024] = "";
        if (fgets(line, sizeof(line), out)) {
            char *tab = strchr(line, '\t');
            ntables = strtoll(line, NULL, 10);
            if (tab)
                snprintf(names, sizeof(names), "%.*s", (int)strcspn(tab + 1, "\n"), tab + 1);
        }
    }
    if (out)
        fclose(out);
    if (ntables < 0) {
        bk_fail("cannot reach the MySQL database %s on %s: see the message above", s->name,
                s->host);
    } else if (ntables > 0 && !force) {
        bk_fail("the MySQL database %s is not empty (%lld table%s: %s): restoring would replace "
                "its tables; pass --force to restore over it",
                s->name, ntables, ntables == 1 ? "" : "s", names);
    } else {
        char *argv[] = {tool, defaults, s->name, NULL};
        bk_progress pg;
        bk_progress_init(&pg, "restore");
        bk_watch w = {.reads = archive};
        st = bk_run_tool(argv, archive, -2, &pg, &w);
        if (st == 0) {
            struct stat sb;
            stat(archive, &sb);
            bk_progress_show(&pg, (uint64_t)sb.st_size, (uint64_t)sb.st_size, true);
            rc = NX_OK;
        } else {
            bk_progress_clear(&pg);
            if (st > 0)
                bk_fail("%s failed (exit status %d) while restoring: see its message above; "
                        "MySQL commits each table's DDL, so the database may be partly restored",
                        tool, st);
        }
    }
    unlink(cnf);
    free(tool);
    return rc;
}
