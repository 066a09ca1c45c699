/*
 * migrate.c - `nexus migrate` and `nexus migrate status`: the plugins' schema migrations.
 *
 * The configuration and the plugins are loaded as `nexus serve` would load them (so the
 * migrations applied are those of the plugins it would run, in its order); the work itself
 * is in db/migrate.c, which the master also runs at start with database.auto_migrate.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "config/config.h"
#include "db/migrate.h"
#include "http/router.h"
#include "plugin/loader.h"

#define EX_USAGE_STATUS 64

static void usage(FILE *out)
{
    fprintf(out, "usage: nexus migrate [--config FILE] [options]\n"
                 "       nexus migrate status [--config FILE] [options]\n\n"
                 "migrate  applies the pending migrations of the plugins (NAME/migrations/*.sql "
                 "beside\n"
                 "         each NAME.so), in plugin dependency order then by number, each in its "
                 "own\n"
                 "         transaction, recorded in the table schema_migrations\n"
                 "status   lists every migration as applied, pending, changed (its file differs "
                 "from\n"
                 "         the one applied) or missing (recorded, but no file); changes nothing\n\n"
                 "exit status: 0 done, 1 a migration failed (it was rolled back; the message names "
                 "the\n"
                 "plugin, the file and the database's error), 78 the configuration is invalid.\n"
                 "The options are those of nexus serve (nexus serve --help).\n");
}

int nx_cmd_migrate(int argc, char **argv)
{
    bool status = argc > 2 && strcmp(argv[2], "status") == 0;
    int first = status ? 3 : 2;
    if (nx_cli_wants_help(argc, argv, first)) {
        usage(stdout);
        return 0;
    }
    if (!status && argc > 2 && argv[2][0] != '-') {
        fprintf(stderr, "nexus migrate: unknown subcommand '%s'\n\n", argv[2]);
        usage(stderr);
        return EX_USAGE_STATUS;
    }
    nx_config cfg;
    nx_router *router = nx_router_new();
    int rc = nx_cli_load_plugins(argc, argv, first, &cfg, router);
    if (rc == NX_EX_CONFIG) {
        nx_router_free(router);
        nx_config_free(&cfg);
        return NX_EX_CONFIG;
    }
    if (rc != 0) {
        rc = NX_MIGRATE_FAILED;
    } else {
        size_t n = 0;
        nx_migrate_source *src = nx_migrate_sources_loaded(&n);
        rc = status ? nx_migrate_status(cfg.db, src, n)
                    : nx_migrate_apply(cfg.db, src, n, NX_MIGRATE_STDIO);
        nx_migrate_sources_free(src, n);
    }
    nx_plugins_unload();
    nx_router_free(router);
    nx_config_free(&cfg);
    return rc;
}
