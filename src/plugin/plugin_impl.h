/*
 * plugin/plugin_impl.h - the loader's view of a plugin, shared by loader.c and settings.c.
 */
#ifndef NX_PLUGIN_IMPL_H
#define NX_PLUGIN_IMPL_H

#include <stdbool.h>

#include <nexus/plugin.h>

#include "config/config.h"
#include "http/router.h"

enum nx_plugin_state { NX_PLUGIN_FOUND, NX_PLUGIN_LOADED, NX_PLUGIN_SKIPPED };

struct nx_plugin {
    const nx_plugin_desc *desc;
    char *path;
    void *handle;
    int copy_fd; /* the private copy it was opened from, or -1 */
    nx_router *router;
    enum nx_plugin_state state;
    char *why;      /* why it was skipped */
    int failed;     /* a registration inside init failed */
    char **values;  /* one per declared setting, checked */
    char **sources; /* where each value came from: "default", file:line, variable */
    size_t nvalues;
    nx_worker_start_fn worker_start;
    nx_worker_stop_fn worker_stop;
};

/*
 * Takes p's settings from cfg (plugins.<name>.<key>, NEXUS_PLUGINS_<NAME>_<KEY>), checks
 * them and stores them in p->values; marks the extras it used in claimed. NX_ERR with err.
 */
int nx_plugin_settings_resolve(nx_plugin *p, const nx_config *cfg, bool *claimed, char *err,
                               size_t errlen);

/* Frees p->values and p->sources. */
void nx_plugin_settings_free(nx_plugin *p);

/*
 * Values nobody claimed: an error when they are under a plugin in plugins[] (a misspelt
 * key), a warning otherwise (a plugin not loaded here).
 */
int nx_plugin_settings_unclaimed(const nx_config *cfg, const bool *claimed,
                                 nx_plugin *const *plugins, size_t n, char *err, size_t errlen);

#endif
