/*
 * core/resolve.h - host names to addresses without blocking the worker.
 *
 * getaddrinfo has no non-blocking form in glibc that fits an epoll loop, and a slow DNS
 * server (a cluster's resolver trying search domains, one that times out) would stop every
 * request of the worker while a database or Redis connection is opened. The lookup runs on
 * a short-lived thread instead; the coroutine waits on an eventfd the thread signals, up to
 * its deadline. Numeric addresses and socket paths are answered at once, without a thread.
 */
#ifndef NX_CORE_RESOLVE_H
#define NX_CORE_RESOLVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/loop.h"

#define NX_RESOLVE_MAX 4 /* addresses kept per name */
#define NX_ADDR_LEN 46   /* INET6_ADDRSTRLEN, without <arpa/inet.h> for every includer */

typedef struct nx_addrs {
    int n;
    char addr[NX_RESOLVE_MAX][NX_ADDR_LEN]; /* numeric, in getaddrinfo's order */
} nx_addrs;

/* An IPv4 or IPv6 address written as one (no lookup needed). */
bool nx_host_is_numeric(const char *host);

/* A lookup under way: the thread and the waiter share it; whoever lets go last frees it. */
typedef struct nx_lookup nx_lookup;

/*
 * Starts resolving host (TCP addresses) on a thread. NULL when no thread can be started:
 * the caller then resolves in place (nx_resolve_now) or fails.
 */
nx_lookup *nx_lookup_start(const char *host);
/* Readable (EPOLLIN) once the answer is in. */
int nx_lookup_fd(const nx_lookup *l);
/*
 * Takes the answer of a lookup whose fd is readable and lets go of it. NX_OK with out
 * filled, or NX_ERR with why ("name not known", ...).
 */
int nx_lookup_finish(nx_lookup *l, nx_addrs *out, char *why, size_t whylen);
/* Lets go of a lookup whose answer is no longer wanted (deadline, client gone). */
void nx_lookup_abandon(nx_lookup *l);

/* getaddrinfo in place, blocking: for code that runs outside the loop (the CLI). */
int nx_resolve_now(const char *host, nx_addrs *out, char *why, size_t whylen);

/*
 * All of it for a coroutine: a numeric host is copied, a name resolved on a thread while
 * the coroutine waits until deadline (0 = none). NX_OK, NX_ERR with why, or
 * NX_RESOLVE_LATE (why filled too) when the deadline passed or the wait was interrupted
 * first. Outside a coroutine it blocks.
 */
#define NX_RESOLVE_LATE (-2)
int nx_resolve(nx_loop *loop, const char *host, nx_addrs *out, uint64_t deadline, char *why,
               size_t whylen);

#endif
