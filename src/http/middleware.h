/*
 * http/middleware.h - the ordered before/after hooks every request passes through.
 *
 * Registered in the master (by plugins' init) before forking, read-only in workers.
 */
#ifndef NX_HTTP_MIDDLEWARE_H
#define NX_HTTP_MIDDLEWARE_H

#include <stdbool.h>

#include <nexus/plugin.h>

/* Adds a hook pair for owner (a plugin), kept sorted by priority then insertion. */
void nx_middleware_add(const void *owner, const char *name, int priority, nx_before_fn before,
                       nx_after_fn after);

/* Removes owner's hooks (its plugin failed or was replaced). */
void nx_middleware_remove_owner(const void *owner);

/*
 * Runs the before hooks in order. Returns how many ran (to pass to nx_middleware_after),
 * and sets *stopped when one answered the request itself.
 */
size_t nx_middleware_before(nx_req *req, nx_res *res, bool *stopped);

/* Runs the after hooks of the first n before hooks, in reverse order. */
void nx_middleware_after(nx_req *req, nx_res *res, size_t n);

#endif
