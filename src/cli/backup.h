/*
 * cli/backup.h - what `nexus backup` and `nexus restore` (backup.c) share with the three
 * backends (backup_pg.c, backup_mysql.c, backup_sqlite.c).
 *
 * Each backend writes an archive to a temporary path, checks that an archive opens, and
 * restores one; backup.c does the rest (arguments, configuration, the rename into place,
 * the checksum beside the archive, refusing a mismatch). Errors are printed with bk_fail,
 * as "nexus: ..." on stderr; the functions return NX_OK or NX_ERR.
 */
#ifndef NX_CLI_BACKUP_H
#define NX_CLI_BACKUP_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db/db_impl.h"

/* The signal that interrupted the command (SIGINT, SIGTERM), or 0. */
extern volatile sig_atomic_t bk_interrupted;

void bk_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A progress bar on stderr, drawn only when stderr is a terminal. */
typedef struct bk_progress {
    bool on; /* stderr is a terminal */
    const char *what;
    uint64_t start, last;
    bool shown;
} bk_progress;

void bk_progress_init(bk_progress *p, const char *what);
/* done of total bytes (total 0: unknown); final draws even between the periodic updates. */
void bk_progress_show(bk_progress *p, uint64_t done, uint64_t total, bool final);
void bk_progress_clear(bk_progress *p);

/* What a running tool is watched by, for the progress bar. */
typedef struct bk_watch {
    const char *grows; /* a file it writes: its size is shown */
    const char *reads; /* a file it reads: its position in it, of the file's size */
} bk_watch;

/* The first of names found: PATH first, then the newest /usr/lib/postgresql/N/bin for pg_*.
 * Allocated; NULL when none is. */
char *bk_find_tool(const char *const names[], size_t n);

/*
 * Runs argv (environment: ours) with stdin from in_path (NULL: /dev/null) and stdout to
 * out_fd (-1: ours; -2: /dev/null); its stderr is ours. Returns its exit status, or -1 when
 * it could not start or was killed (reported).
 */
int bk_run_tool(char *const argv[], const char *in_path, int out_fd, bk_progress *pg,
                const bk_watch *w);

/* PostgreSQL: pg_dump --format=custom into tmp; pg_restore --list (entries: its count);
 * pg_restore --single-transaction, refused into a database with tables unless force. */
int bk_pg_backup(const nx_db_settings *s, const char *tmp);
int bk_pg_verify(const char *archive, int *entries);
int bk_pg_restore(const nx_db_settings *s, const char *archive, bool force);

/* MySQL / MariaDB: the dump tool into tmp; the dump must end with "-- Dump completed"; the
 * client, refused into a database with tables unless force. */
int bk_mysql_backup(const nx_db_settings *s, const char *tmp);
int bk_mysql_verify(const char *archive);
int bk_mysql_restore(const nx_db_settings *s, const char *archive, bool force);

/* SQLite: the online backup API both ways; verify runs integrity_check (what: a summary). */
int bk_sqlite_backup(const nx_db_settings *s, const char *tmp);
int bk_sqlite_verify(const char *archive, char *what, size_t len);
int bk_sqlite_restore(const nx_db_settings *s, const char *archive, bool force);

#endif
