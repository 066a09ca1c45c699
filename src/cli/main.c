/*
 * main.c - `nexus COMMAND ...`: only dispatches.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: nexus COMMAND [options]\n\n"
                 "commands:\n"
                 "  serve      run the server (nexus serve --help for its options)\n"
                 "  config     check or show the configuration (nexus config --help)\n"
                 "  new        create a plugin project: nexus new plugin NAME\n"
                 "  plugins    list the plugins found, with version, state and file\n"
                 "  routes     list every route with its methods, flags and plugin\n"
                 "  migrate    apply the plugins' pending migrations (status: list them)\n"
                 "  backup     write the database to an archive: nexus backup --output FILE\n"
                 "  restore    restore the database from an archive (--verify: only check it)\n"
                 "  health     exit 0 when the server at the configured address answers /health\n"
                 "  version    print the version\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 64;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0)
        return nx_cmd_serve(argc, argv);
    if (strcmp(cmd, "config") == 0)
        return nx_cmd_config(argc, argv);
    if (strcmp(cmd, "new") == 0)
        return nx_cmd_new(argc, argv);
    if (strcmp(cmd, "plugins") == 0)
        return nx_cmd_plugins(argc, argv);
    if (strcmp(cmd, "routes") == 0)
        return nx_cmd_routes(argc, argv);
    if (strcmp(cmd, "migrate") == 0)
        return nx_cmd_migrate(argc, argv);
    if (strcmp(cmd, "backup") == 0)
        return nx_cmd_backup(argc, argv);
    if (strcmp(cmd, "restore") == 0)
        return nx_cmd_restore(argc, argv);
    if (strcmp(cmd, "health") == 0)
        return nx_cmd_health(argc, argv);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("nexus %s\n", NX_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || nx_cli_is_help(cmd)) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "nexus: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 64;
}
