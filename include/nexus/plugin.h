/*
 * nexus/plugin.h - what a plugin exports and what its init may register.
 *
 * A plugin is a shared object exporting one const descriptor named `nexus_plugin`,
 * made with NEXUS_PLUGIN(). The loader checks the descriptor's ABI version before running
 * any of the plugin's code. init runs once in the master before the workers are forked;
 * it registers routes and readiness checks through the nx_plugin handle and returns 0, or
 * non-zero to refuse to start (the reason is logged by the plugin).
 */
#ifndef NEXUS_PLUGIN_H
#define NEXUS_PLUGIN_H

#include <stdbool.h>

#include <nexus/http.h>

/* Bumped whenever a change in the public headers breaks built plugins. */
#define NX_ABI_VERSION 1

typedef struct nx_plugin nx_plugin;

typedef void (*nx_handler_fn)(nx_req *req, nx_res *res);
typedef int (*nx_plugin_init_fn)(nx_plugin *p);
typedef void (*nx_plugin_fini_fn)(nx_plugin *p);

/* A readiness check: returns true when ready, else false and a short reason in *why. */
typedef bool (*nx_ready_fn)(const char **why);

typedef struct nx_plugin_desc {
    int abi_version;
    const char *name;
    const char *version;
    nx_plugin_init_fn init;
    nx_plugin_fini_fn fini;
} nx_plugin_desc;

/* Route flags. */
enum {
    NX_ROUTE_DEFAULT = 0,
    NX_AUTH_REQUIRED = 1 << 0, /* enforced once authentication exists */
};

/*
 * Registers handler for method (GET, POST, ... or "*" for any) and a path pattern:
 * literal segments, "{name}" (one segment), "{name:int}" (a decimal integer), and a final
 * "{name...}" or "*" matching the rest of the path. Returns NX_OK, or NX_ERR with the
 * reason logged (a bad pattern, or a clash with an identical route).
 */
int nx_route(nx_plugin *p, const char *method, const char *pattern, nx_handler_fn handler,
             int flags);

/* Adds a readiness check named name, run by GET /ready in every worker. */
int nx_ready_check(nx_plugin *p, const char *name, nx_ready_fn check);

/* The plugin's name as declared in its descriptor. */
const char *nx_plugin_name(const nx_plugin *p);

#define NEXUS_PLUGIN(name_, version_, init_, fini_)                                           \
    const nx_plugin_desc nexus_plugin = {                                                     \
        .abi_version = NX_ABI_VERSION,                                                        \
        .name = (name_),                                                                      \
        .version = (version_),                                                                \
        .init = (init_),                                                                      \
        .fini = (fini_),                                                                      \
    }

#endif
