/*
 * db/migrate.h - the plugins' schema migrations: finding them, applying the pending ones,
 * reporting what is applied.
 *
 * A plugin ships SQL files beside its shared object, in <folder of NAME.so>/NAME/migrations/:
 *
 *   0001_create_items.sql              for every backend
 *   0002_add_index.sql
 *   0002_add_index.postgresql.sql      wins over 0002_add_index.sql on PostgreSQL
 *                                      (also .sqlite.sql and .mysql.sql)
 *
 * The number orders a plugin's migrations; the plugins come in the loader's order, so a
 * plugin's tables exist before those of the plugins that depend on it. Each migration runs
 * in a transaction of its own and is recorded in the table schema_migrations (plugin,
 * version, name, checksum, applied_at); a migration already recorded is never run again,
 * and one whose file changed since is reported, not re-run.
 *
 * Replicas starting together apply each migration once: every migration takes a lock and
 * checks the table again before running. PostgreSQL: pg_advisory_xact_lock inside the
 * migration's transaction. SQLite: BEGIN IMMEDIATE (the database's write lock). MySQL:
 * GET_LOCK on a held connection for the whole run, because MySQL commits DDL statements
 * implicitly: a failed MySQL migration may leave its DDL applied (it is not recorded).
 *
 * Everything here runs in the master or in a CLI command, never in a worker: the database
 * work goes through nx_db_run_sync on a private loop, with no statement timeout.
 */
#ifndef NX_DB_MIGRATE_H
#define NX_DB_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>

#include "db/db_impl.h"

/* Where the messages of a run go. */
typedef enum nx_migrate_out {
    NX_MIGRATE_STDIO, /* progress on stdout, warnings and errors on stderr (the CLI) */
    NX_MIGRATE_LOG,   /* the server's log (the master, database.auto_migrate) */
} nx_migrate_out;

/* The outcome of a run; also the exit status of `nexus migrate`. */
enum {
    NX_MIGRATE_OK = 0,
    NX_MIGRATE_FAILED = 1, /* a migration failed (rolled back), or the database or the
                            * migration files could not be read; the reason was reported */
};

/* One plugin's migrations: its name (borrowed) and the folder its files are in. */
typedef struct nx_migrate_source {
    const char *plugin;
    char *dir;
} nx_migrate_source;

/*
 * The migration folders of the plugins loaded in this process (nx_plugins_load), in init
 * order, whether the folder exists or not: a malloc'd array of *n entries, for
 * nx_migrate_sources_free. The names point into the loader's plugins: use the array before
 * they are unloaded.
 */
nx_migrate_source *nx_migrate_sources_loaded(size_t *n);
void nx_migrate_sources_free(nx_migrate_source *src, size_t n);

/*
 * Applies the pending migrations of src[0..n) to the database of s: plugin by plugin, each
 * by number, each in its own transaction under the migration lock. Stops at the first
 * failure, after rolling that migration back. Returns NX_MIGRATE_OK or NX_MIGRATE_FAILED.
 */
int nx_migrate_apply(const nx_db_settings *s, const nx_migrate_source *src, size_t n,
                     nx_migrate_out out);

/*
 * Prints every migration of src[0..n) with its state (applied, pending, changed: applied
 * but the file differs now, missing: recorded but no file) to stdout, and a warning on
 * stderr for each changed one. Changes nothing in the database. NX_MIGRATE_OK or
 * NX_MIGRATE_FAILED.
 */
int nx_migrate_status(const nx_db_settings *s, const nx_migrate_source *src, size_t n);

/* For the master: applies the loaded plugins' migrations, reporting to the log. */
int nx_migrate_at_start(const nx_db_settings *s);

#endif
