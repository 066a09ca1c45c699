/*
 * serve.c - `nexus serve`: settings, then the master.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config/config.h"
#include "core/log.h"
#include "core/util.h"
#include "server/server.h"

/* Plugins beside the binary (build/plugins for build/nexus), else the installed folder
 * (PREFIX/lib/nexus/plugins for PREFIX/bin/nexus). */
char *nx_default_plugins_dir(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return nx_xstrdup("plugins");
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    char path[PATH_MAX + 32];
    struct stat st;
    snprintf(path, sizeof(path), "%s/plugins", exe);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return nx_xstrdup(path);
    snprintf(path, sizeof(path), "%s/../lib/nexus/plugins", exe);
    return nx_xstrdup(path);
}

int nx_cmd_serve(int argc, char **argv)
{
    if (nx_cli_wants_help(argc, argv, 2)) {
        printf("usage: nexus serve [options]\n\n");
        nx_config_usage(stdout);
        return 0;
    }
    nx_config cfg;
    nx_config_defaults(&cfg);
    if (nx_config_load(&cfg, argc, argv, 2) != NX_OK) {
        nx_config_free(&cfg);
        return NX_EX_CONFIG;
    }
    char *dir = nx_default_plugins_dir();
    nx_config_default_plugins_dir(&cfg, dir);
    free(dir);
    nx_log_apply_level(cfg.log_level);
    int rc = nx_server_run(&cfg);
    nx_config_free(&cfg);
    return rc;
}
