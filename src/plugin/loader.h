/*
 * plugin/loader.h - finding, checking and initialising plugins.
 *
 * Runs in the master before the workers are forked, so every worker inherits the loaded
 * plugins and their routes. A plugin that cannot be loaded stops start-up with a message
 * naming its file and the reason.
 */
#ifndef NX_PLUGIN_LOADER_H
#define NX_PLUGIN_LOADER_H

#include <stddef.h>

#include "config/config.h"
#include "http/router.h"

/*
 * Loads every *.so in the ':'-separated folders dirs, in name order, registering routes on
 * router. Each plugin's settings are taken from cfg's plugins.<name> values and
 * NEXUS_PLUGINS_<NAME>_* variables and checked before its init runs; a value for a plugin
 * that does not declare it is an error too. Returns NX_OK, or NX_ERR with the reason in
 * err.
 */
int nx_plugins_load(const char *dirs, const nx_config *cfg, nx_router *router, char *err,
                    size_t errlen);

/* Number of plugins loaded. */
size_t nx_plugins_count(void);

/* Runs each plugin's fini, newest first. */
void nx_plugins_unload(void);

#endif
