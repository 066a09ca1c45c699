/*
 * plugins.c - `nexus plugins` and `nexus routes`: what a server with this configuration
 * would load and serve, without starting it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "config/config.h"
#include "core/log.h"
#include "http/router.h"
#include "observe/health.h"
#include "plugin/loader.h"

int nx_cli_load_plugins(int argc, char **argv, int first, nx_config *cfg, nx_router *router)
{
    nx_config_defaults(cfg);
    if (nx_config_load(cfg, argc, argv, first) != 0)
        return NX_EX_CONFIG;
    nx_log_apply_level(cfg->log_level);
    return nx_cli_plugins_into(cfg, router);
}

int nx_cli_plugins_into(nx_config *cfg, nx_router *router)
{
    char *dir = nx_default_plugins_dir();
    nx_config_default_plugins_dir(cfg, dir);
    free(dir);
    char err[768];
    if (nx_health_routes(router, err, sizeof(err)) != 0) {
        fprintf(stderr, "nexus: %s\n", err);
        return 1;
    }
    int loaded = nx_plugins_load(cfg->plugins_dir, cfg, router, false, err, sizeof(err));
    if (loaded != NX_OK) {
        fprintf(stderr, "nexus: %s\n", err);
        return loaded == NX_PLUGINS_BAD_CONFIG ? NX_EX_CONFIG : 1;
    }
    return 0;
}

typedef struct counter {
    const char *owner;
    size_t n;
} counter;

static void count_routes(const nx_route_info *ri, void *arg)
{
    counter *c = arg;
    c->n += strcmp(ri->owner, c->owner) == 0;
}

static void print_plugin(const nx_plugin *p, void *arg)
{
    const nx_router *router = arg;
    const char *why = NULL;
    const char *state = nx_plugin_state_name(p, &why);
    counter c = {nx_plugin_name(p), 0};
    nx_router_each(router, count_routes, &c);
    printf("%-20s %-10s %-8s %6zu  %s\n", nx_plugin_name(p), nx_plugin_version(p), state, c.n,
           nx_plugin_path(p));
    if (why)
        printf("%-20s   %s\n", "", why);
}

int nx_cmd_plugins(int argc, char **argv)
{
    nx_config cfg;
    nx_router *router = nx_router_new();
    int rc = nx_cli_load_plugins(argc, argv, 2, &cfg, router);
    if (rc == 0) {
        printf("%-20s %-10s %-8s %6s  %s\n", "NAME", "VERSION", "STATE", "ROUTES", "FILE");
        nx_plugins_each(print_plugin, router);
    }
    nx_plugins_unload();
    nx_router_free(router);
    nx_config_free(&cfg);
    return rc;
}

static void print_route(const nx_route_info *ri, void *arg)
{
    (void)arg;
    char flags[64] = "-";
    if (ri->flags & NX_AUTH_REQUIRED)
        snprintf(flags, sizeof(flags), "auth");
    printf("%-8s %-40s %-8s %s\n", ri->method, ri->pattern, flags, ri->owner);
}

int nx_cmd_routes(int argc, char **argv)
{
    nx_config cfg;
    nx_router *router = nx_router_new();
    int rc = nx_cli_load_plugins(argc, argv, 2, &cfg, router);
    if (rc == 0) {
        printf("%-8s %-40s %-8s %s\n", "METHOD", "PATTERN", "FLAGS", "PLUGIN");
        nx_router_each(router, print_route, NULL);
    }
    nx_plugins_unload();
    nx_router_free(router);
    nx_config_free(&cfg);
    return rc;
}

bool nx_cli_is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

bool nx_cli_wants_help(int argc, char **argv, int first)
{
    for (int i = first; i < argc; i++)
        if (nx_cli_is_help(argv[i]))
            return true;
    return false;
}
