/*
 * plugin/loader.h - finding, ordering, checking and initialising plugins.
 *
 * Runs in the master before the workers are forked, so every worker inherits the loaded
 * plugins and their routes; on reload the master loads a fresh set for the new workers.
 */
#ifndef NX_PLUGIN_LOADER_H
#define NX_PLUGIN_LOADER_H

#include <stdbool.h>
#include <stddef.h>

#include <nexus/plugin.h>

#include "config/config.h"
#include "http/router.h"

/*
 * Loads the plugins of the ':'-separated folders dirs: every *.so, filtered by
 * plugins.enabled, ordered by their dependencies (then by name), each one's settings
 * checked before its init registers routes on router. fresh (reload) loads private copies,
 * so that files rebuilt in place are read anew. Returns NX_OK, or NX_ERR with the reason
 * in err (with plugins.strict false, failing plugins are skipped instead, with a log), or
 * NX_PLUGINS_BAD_CONFIG when the reason is the configuration's: a plugin setting, a key
 * under plugins.<name> that no plugin declares, plugins.enabled or plugins.dir naming what
 * is not there, a missing dependency or a cycle.
 */
#define NX_PLUGINS_BAD_CONFIG (-2)

int nx_plugins_load(const char *dirs, const nx_config *cfg, nx_router *router, bool fresh,
                    char *err, size_t errlen);

/* Runs the loaded plugins' worker start hooks in init order (in a new worker); NX_ERR
 * when one fails. */
int nx_plugins_worker_start(void);

/* Runs their worker stop hooks in reverse order (a worker leaving). */
void nx_plugins_worker_stop(void);

/* Number of plugins loaded. */
size_t nx_plugins_count(void);

/* Runs each loaded plugin's fini, newest first, and forgets them all. */
void nx_plugins_unload(void);

/* Every plugin found, loaded or skipped, in init order. */
void nx_plugins_each(void (*fn)(const nx_plugin *p, void *arg), void *arg);

/* "loaded", "skipped" (with *why) or "found"; the file; the declared version. */
const char *nx_plugin_state_name(const nx_plugin *p, const char **why);
const char *nx_plugin_path(const nx_plugin *p);
const char *nx_plugin_version(const nx_plugin *p);

/* Each declared setting of a loaded plugin with its checked value and where that came
 * from ("default", file:line, "environment NAME"), in declaration order. */
void nx_plugin_settings_each(const nx_plugin *p,
                             void (*fn)(const nx_plugin_setting *decl, const char *value,
                                        const char *source, void *arg),
                             void *arg);

/* A whole set of plugins, for reload: take the current set aside, load a new one, then
 * free the old (success) or restore it (failure). */
typedef struct nx_plugin_set {
    nx_plugin **plugins;
    size_t n;
} nx_plugin_set;

nx_plugin_set nx_plugins_take(void);
void nx_plugins_restore(nx_plugin_set s);

/* Finis and unloads a set taken aside; no router may refer to its handlers any more. */
void nx_plugin_set_free(nx_plugin_set s);

/* Takes a set's readiness checks, middleware and subscriptions out of the global lists,
 * leaving its code loaded: in a worker forked during a reload, the set it does not run. */
void nx_plugin_set_forget(nx_plugin_set s);

#endif
