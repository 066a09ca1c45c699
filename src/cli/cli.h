/*
 * cli/cli.h - the subcommands main.c dispatches to. Each returns an exit status.
 */
#ifndef NX_CLI_CLI_H
#define NX_CLI_CLI_H

int nx_cmd_serve(int argc, char **argv);
int nx_cmd_config(int argc, char **argv);
int nx_cmd_new(int argc, char **argv);
int nx_cmd_plugins(int argc, char **argv);
int nx_cmd_routes(int argc, char **argv);
int nx_cmd_migrate(int argc, char **argv);
int nx_cmd_backup(int argc, char **argv);
int nx_cmd_restore(int argc, char **argv);
int nx_cmd_health(int argc, char **argv);

/* Plugins beside the binary, else the installed folder; the caller frees. */
char *nx_default_plugins_dir(void);

#endif
