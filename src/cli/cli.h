/*
 * cli/cli.h - the subcommands main.c dispatches to. Each returns an exit status.
 */
#ifndef NX_CLI_CLI_H
#define NX_CLI_CLI_H

#include <stdbool.h>

int nx_cmd_serve(int argc, char **argv);
int nx_cmd_config(int argc, char **argv);
int nx_cmd_new(int argc, char **argv);
int nx_cmd_plugins(int argc, char **argv);
int nx_cmd_routes(int argc, char **argv);
int nx_cmd_migrate(int argc, char **argv);
int nx_cmd_backup(int argc, char **argv);
int nx_cmd_restore(int argc, char **argv);
int nx_cmd_health(int argc, char **argv);

/* "--help" or "-h". */
bool nx_cli_is_help(const char *arg);
/* Whether argv[first..argc) asks for help anywhere. */
bool nx_cli_wants_help(int argc, char **argv, int first);

struct nx_config;
struct nx_router;
/*
 * Loads the configuration from argv[first...] (as serve would) and the plugins it names
 * into router, applying logging.level. 0, or the exit status (after saying why): 78 for
 * the configuration (plugin settings included), 1 for a plugin's file or init. The caller
 * frees cfg and the router, and unloads.
 */
int nx_cli_load_plugins(int argc, char **argv, int first, struct nx_config *cfg,
                        struct nx_router *router);

/* The second half of nx_cli_load_plugins, for a configuration already loaded: fills in the
 * default plugins folder, then loads the plugins into router. Same statuses. */
int nx_cli_plugins_into(struct nx_config *cfg, struct nx_router *router);

/* Plugins beside the binary, else the installed folder; the caller frees. */
char *nx_default_plugins_dir(void);

#endif
