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
#include <stdint.h>

#include <nexus/http.h>

/* Bumped whenever a change in the public headers breaks built plugins. */
#define NX_ABI_VERSION 1

typedef struct nx_plugin nx_plugin;

typedef void (*nx_handler_fn)(nx_req *req, nx_res *res);
typedef int (*nx_plugin_init_fn)(nx_plugin *p);
typedef void (*nx_plugin_fini_fn)(nx_plugin *p);

/* A readiness check: returns true when ready, else false and a short reason in *why. */
typedef bool (*nx_ready_fn)(const char **why);

/* Types of a plugin's settings, checked as the server's own are. */
typedef enum nx_setting_type {
    NX_SETTING_STR,
    NX_SETTING_INT,      /* decimal integer */
    NX_SETTING_BOOL,     /* true/false, yes/no, on/off, 1/0 */
    NX_SETTING_DURATION, /* 500ms, 30s, 5m, 1h, or seconds */
    NX_SETTING_SIZE,     /* bytes with an optional k, M or g */
} nx_setting_type;

/*
 * One setting of a plugin, read from the YAML file as plugins.<plugin>.<name> and from the
 * variable NEXUS_PLUGINS_<PLUGIN>_<NAME> (or its _FILE form), which wins. A value of the
 * wrong type, or a key under plugins.<plugin> that the plugin does not declare, stops
 * start-up with the file:line or variable. Declared in an array ended by {.name = NULL},
 * with designated initializers (the fields left out are zero).
 */
typedef struct nx_plugin_setting {
    const char *name;
    nx_setting_type type;
    const char *def; /* default, as it would be written in the file */
    const char *help;
    bool secret; /* never printed */
} nx_plugin_setting;

typedef struct nx_plugin_desc {
    int abi_version;
    const char *name;
    const char *version;
    nx_plugin_init_fn init;
    nx_plugin_fini_fn fini;
    const nx_plugin_setting *settings; /* NULL, or an array ended by {NULL} */
    const char *const *depends;        /* names of plugins to init first; NULL-ended */
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

/*
 * Middleware: before runs ahead of routing for every request (except the /health and
 * /ready probes) and returns true to go on, or false once it has answered (a 401, a 429);
 * after runs once the response is set, for every request that reached before. Hooks run in
 * the request's coroutine and may wait. Ordered by priority (lower first), then by plugin
 * init order; after hooks run in the reverse order, so the first before is the last after.
 * Either function may be NULL.
 */
typedef bool (*nx_before_fn)(nx_req *req, nx_res *res);
typedef void (*nx_after_fn)(nx_req *req, nx_res *res);

int nx_middleware(nx_plugin *p, const char *name, int priority, nx_before_fn before,
                  nx_after_fn after);

/*
 * Called in every worker process: start after it is forked and before it accepts (open
 * per-worker connections here), stop when it leaves after draining. A start hook returning
 * non-zero makes the worker exit; the master logs it and starts another.
 */
typedef int (*nx_worker_start_fn)(nx_plugin *p);
typedef void (*nx_worker_stop_fn)(nx_plugin *p);

int nx_on_worker(nx_plugin *p, nx_worker_start_fn start, nx_worker_stop_fn stop);

/* Adds a readiness check named name, run by GET /ready in every worker. */
int nx_ready_check(nx_plugin *p, const char *name, nx_ready_fn check);

/* The plugin's name as declared in its descriptor. */
const char *nx_plugin_name(const nx_plugin *p);

/*
 * The value of one of the plugin's declared settings (already checked against its type),
 * NUL-terminated and valid for the life of the server; NULL for an undeclared name. The
 * typed forms return the default of their type's zero for an undeclared name.
 */
const char *nx_plugin_config(const nx_plugin *p, const char *name);
int64_t nx_plugin_config_int(const nx_plugin *p, const char *name);
bool nx_plugin_config_bool(const nx_plugin *p, const char *name);
uint64_t nx_plugin_config_ms(const nx_plugin *p, const char *name);
uint64_t nx_plugin_config_size(const nx_plugin *p, const char *name);

#define NEXUS_PLUGIN(name_, version_, init_, fini_)                                                \
    NEXUS_PLUGIN_WITH_SETTINGS(name_, version_, init_, fini_, NULL)

/*
 * The descriptor written out, for plugins that need more than the macros give:
 *
 *   static const char *const deps[] = {"auth", NULL};
 *   NEXUS_PLUGIN_DESCRIPTOR = {NX_PLUGIN_ABI, .name = "todo", .version = "1.0.0",
 *                              .init = todo_init, .depends = deps};
 */
#define NEXUS_PLUGIN_DESCRIPTOR const nx_plugin_desc nexus_plugin
#define NX_PLUGIN_ABI .abi_version = NX_ABI_VERSION

/* As NEXUS_PLUGIN, for a plugin with settings (an nx_plugin_setting array). */
#define NEXUS_PLUGIN_WITH_SETTINGS(name_, version_, init_, fini_, settings_)                       \
    const nx_plugin_desc nexus_plugin = {                                                          \
        .abi_version = NX_ABI_VERSION,                                                             \
        .name = (name_),                                                                           \
        .version = (version_),                                                                     \
        .init = (init_),                                                                           \
        .fini = (fini_),                                                                           \
        .settings = (settings_),                                                                   \
    }

#endif
