/*
 * observe/health.h - GET /health (liveness) and GET /ready (readiness).
 *
 * /health answers 200 as long as the worker's loop runs and touches no dependency: a
 * database outage must not get healthy pods restarted. /ready answers 503 while the
 * server is stopping (so load balancers take it out of rotation before it closes its
 * listener) and when any registered readiness check fails, naming it.
 */
#ifndef NX_OBSERVE_HEALTH_H
#define NX_OBSERVE_HEALTH_H

#include <stdbool.h>

#include <nexus/plugin.h>

#include "http/router.h"

/* Registers /health and /ready on r. NX_OK / NX_ERR (err filled). */
int nx_health_routes(nx_router *r, char *err, size_t errlen);

/* Adds a readiness check (plugins, later the database and cache); owner may be NULL. */
void nx_health_add_check(const void *owner, const char *name, nx_ready_fn fn);

/* Removes every check added with owner (a plugin being unloaded). */
void nx_health_remove_owner(const void *owner);

/* Where /ready reads "the server is stopping": a flag in memory shared with the master. */
void nx_health_watch_stop_flag(const volatile int *flag);

/* This worker stops taking new connections (drain): /ready answers 503. */
void nx_health_set_draining(bool draining);

#endif
