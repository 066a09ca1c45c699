/*
 * config.c - `nexus config check|show`: the configuration without a server.
 *
 * check and show load the plugins as serve would, so a plugin's settings are checked and
 * listed with the core keys. A plugins folder that is not on this machine (a check run in
 * CI for a container's /app/plugins) leaves the plugins out with a note, not an error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "config/config.h"
#include "core/log.h"
#include "core/util.h"
#include "http/router.h"
#include "plugin/loader.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: nexus config check [--config FILE] [options]\n"
                 "       nexus config show  [--config FILE] [options]\n"
                 "       nexus config schema | docs\n\n"
                 "check  validates the configuration and the plugins' settings (exit 0, or 78 "
                 "with the reason)\n"
                 "show   prints the effective configuration with each value's source; secrets "
                 "are redacted\n"
                 "schema prints a JSON Schema of the file; docs the reference in Markdown\n");
}

/* The first of the ':'-separated folders that is not a directory here, into missing. */
static bool folders_present(const char *dirs, char *missing, size_t len)
{
    char *copy = nx_xstrdup(dirs), *save = NULL;
    bool ok = true;
    for (char *d = strtok_r(copy, ":", &save); d && ok; d = strtok_r(NULL, ":", &save)) {
        struct stat st;
        if (stat(d, &st) != 0 || !S_ISDIR(st.st_mode)) {
            snprintf(missing, len, "%s", d);
            ok = false;
        }
    }
    free(copy);
    return ok;
}

static void count_setting(const nx_plugin_setting *decl, const char *value, const char *source,
                          void *arg)
{
    (*(size_t *)arg)++;
}

static void show_setting(const nx_plugin_setting *decl, const char *value, const char *source,
                         void *arg)
{
    nx_config_show_value(stdout, 2, decl->name, value, decl->secret, source);
}

/* plugins.<name>: its settings, under the plugins section show has just printed. */
static void show_plugin(const nx_plugin *p, void *arg)
{
    if (strcmp(nx_plugin_state_name(p, NULL), "loaded") != 0)
        return;
    size_t n = 0;
    nx_plugin_settings_each(p, count_setting, &n);
    if (!n)
        return;
    printf("  %s:\n", nx_plugin_name(p));
    nx_plugin_settings_each(p, show_setting, NULL);
}

static void name_plugin(const nx_plugin *p, void *arg)
{
    if (strcmp(nx_plugin_state_name(p, NULL), "loaded") == 0)
        printf("%s%s", (*(int *)arg)++ ? ", " : "", nx_plugin_name(p));
}

/* 0 with the plugins loaded (*loaded true) or left out with a note; else the exit status. */
static int load_plugins(nx_config *cfg, nx_router *router, bool *loaded)
{
    *loaded = false;
    if (*cfg->plugins_dir) {
        char missing[512];
        if (!folders_present(cfg->plugins_dir, missing, sizeof(missing))) {
            fprintf(stderr,
                    "nexus config: the plugins folder %s is not on this machine; the plugins' "
                    "settings were not checked\n",
                    missing);
            return 0;
        }
    }
    /* The plugins' "loaded" lines are for a server's log, not for this answer. */
    if (strcmp(cfg->log_level, "debug") == 0 || strcmp(cfg->log_level, "info") == 0)
        nx_log_apply_level("warn");
    int rc = nx_cli_plugins_into(cfg, router);
    *loaded = rc == 0;
    return rc;
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
    nx_router *router = nx_router_new();
    bool loaded = false;
    int rc = nx_config_load(&cfg, argc, argv, 3) != 0 ? NX_EX_CONFIG
                                                      : load_plugins(&cfg, router, &loaded);
    if (rc == 0 && strcmp(what, "show") == 0) {
        nx_config_show(&cfg, stdout);
        if (loaded)
            nx_plugins_each(show_plugin, NULL);
    } else if (rc == 0) {
        printf("configuration is valid (%s)",
               cfg.config_file ? cfg.config_file : "no file; defaults and environment");
        int n = 0;
        if (loaded) {
            printf("; plugins checked: ");
            nx_plugins_each(name_plugin, &n);
            if (!n)
                printf("none");
        }
        printf("\n");
    }
    nx_plugins_unload();
    nx_router_free(router);
    nx_config_free(&cfg);
    return rc;
}
