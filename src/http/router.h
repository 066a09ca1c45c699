/*
 * http/router.h - method + path routing with typed parameters.
 *
 * Patterns are split into segments and stored in a tree; matching walks it once per
 * request, preferring a literal segment over a parameter over a wildcard, and backtracks
 * only when a more specific branch fails deeper down. The tree is built in the master
 * before forking and is read-only afterwards.
 */
#ifndef NX_HTTP_ROUTER_H
#define NX_HTTP_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include <nexus/plugin.h>

#define NX_MAX_PARAMS 16

typedef struct nx_router nx_router;

typedef struct nx_param {
    const char *name;
    nx_str value; /* raw (still percent-encoded) bytes of the path */
} nx_param;

typedef struct nx_route_info {
    const char *method; /* "GET", or "*" for any */
    const char *pattern;
    const char *owner; /* plugin name, or "nexus" for built-in routes */
    int flags;
} nx_route_info;

typedef struct nx_match {
    nx_handler_fn handler;
    const nx_route_info *route;
    nx_param params[NX_MAX_PARAMS];
    size_t nparams;
} nx_match;

enum nx_match_result {
    NX_MATCH_FOUND,
    NX_MATCH_NOT_FOUND,
    NX_MATCH_NO_METHOD, /* the path exists but not for this method: answer 405 with Allow */
    NX_MATCH_OPTIONS,   /* OPTIONS on a path without an OPTIONS route: answer 204 with Allow */
};

nx_router *nx_router_new(void);
void nx_router_free(nx_router *r);

/*
 * Adds a route. Returns NX_OK, or NX_ERR with a reason in err: a malformed pattern
 * ("{name" unclosed, an unknown type, a wildcard not last, too many parameters) or the
 * same method and pattern shape already registered (its owner is named).
 */
int nx_router_add(nx_router *r, const char *method, const char *pattern, nx_handler_fn handler,
                  int flags, const char *owner, char *err, size_t errlen);

/*
 * Matches method and path (not NUL-terminated; no query). HEAD falls back to GET.
 * On NX_MATCH_NO_METHOD and NX_MATCH_OPTIONS, allow receives the methods the path
 * supports, comma-separated ("GET, HEAD, OPTIONS"), NUL-terminated and truncated to
 * allow_len.
 */
enum nx_match_result nx_router_match(const nx_router *r, const char *method, size_t method_len,
                                     const char *path, size_t path_len, nx_match *m, char *allow,
                                     size_t allow_len);

/* Removes every route registered with owner (a plugin whose init failed). */
void nx_router_remove_owner(nx_router *r, const char *owner);

/* Calls fn for every route, in registration order. */
void nx_router_each(const nx_router *r, void (*fn)(const nx_route_info *ri, void *arg), void *arg);

#endif
