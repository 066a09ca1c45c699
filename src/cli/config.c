/*
 * config.c - `nexus config check|show`: the configuration without a server.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "config/config.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: nexus config check [--config FILE] [options]\n"
                 "       nexus config show  [--config FILE] [options]\n"
                 "       nexus config schema | docs\n\n"
                 "check  validates the configuration (exit 0, or 78 with the reason)\n"
                 "show   prints the effective configuration with each value's source; secrets "
                 "are redacted\n"
                 "schema prints a JSON Schema of the file; docs the reference in Markdown\n");
}

int nx_cmd_config(int argc, char **argv)
{
    if (argc < 3 || nx_cli_is_help(argv[2])) {
        usage(argc < 3 ? stderr : stdout);
        return argc < 3 ? 64 : 0;
    }
    const char *what = argv[2];
    if (strcmp(what, "schema") == 0) {
        nx_config_schema_json(stdout);
        return 0;
    }
    if (strcmp(what, "docs") == 0) {
        nx_config_docs(stdout);
        return 0;
    }
    if (strcmp(what, "check") != 0 && strcmp(what, "show") != 0) {
        fprintf(stderr, "nexus config: unknown subcommand '%s'\n\n", what);
        usage(stderr);
        return 64;
    }
    nx_config cfg;
    nx_config_defaults(&cfg);
    int rc = 0;
    if (nx_config_load(&cfg, argc, argv, 3) != 0) {
        rc = NX_EX_CONFIG;
    } else if (strcmp(what, "show") == 0) {
        nx_config_show(&cfg, stdout);
    } else {
        printf("configuration is valid (%s)\n",
               cfg.config_file ? cfg.config_file : "no file; defaults and environment");
    }
    nx_config_free(&cfg);
    return rc;
}
