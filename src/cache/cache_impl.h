/*
 * cache/cache_impl.h - what the cache API (cache.c) and its backends share.
 *
 * cache.c owns <nexus/cache.h>: it checks keys, turns every backend failure into a miss
 * and counts hits, misses, evictions and errors. A backend stores bytes under keys:
 * shm.c (one shared segment per instance) or redis.c (hiredis on the worker's loop).
 * Backend calls run in a request's coroutine and may park it (Redis); none may block the
 * worker on the network.
 */
#ifndef NX_CACHE_CACHE_IMPL_H
#define NX_CACHE_CACHE_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nexus/arena.h>
#include <nexus/cache.h>

#include "core/loop.h"

typedef enum nx_cache_kind {
    NX_CACHE_MEMORY,
    NX_CACHE_REDIS,
} nx_cache_kind;

/* The cache settings, from cache.* (cache/settings in cache.c). */
typedef struct nx_cache_settings {
    nx_cache_kind kind;
    uint64_t size;           /* memory: bytes of the shared segment */
    uint64_t default_ttl_ms; /* a ttl of 0 means this */
    char *redis_host;        /* a name, an address, or a Unix socket path ('/...') */
    int redis_port;
    char *redis_password;
    int redis_db;
    int redis_max_connections;
    uint64_t redis_connect_timeout_ms;
    uint64_t redis_command_timeout_ms;
} nx_cache_settings;

/* One call into a backend. */
typedef struct nx_cache_call {
    nx_loop *loop;
    nx_arena *arena;   /* values are copied here */
    uint64_t deadline; /* absolute monotonic ms: min(request deadline, command timeout) */
    const bool *gone;  /* the client went away; may be NULL */
    char error[160];   /* why it failed, for the log */
} nx_cache_call;

/* Hands a received message to the subscribers of its channel (pubsub.c). */
typedef void (*nx_cache_deliver_fn)(const char *channel, size_t clen, const void *data, size_t len);

/* Return codes of backend operations besides NX_OK / NX_ERR. */
#define NX_CACHE_MISS 1

typedef struct nx_cache_backend {
    const char *name;
    /* NX_OK with *out set (arena copy, NUL-terminated), NX_CACHE_MISS, or NX_ERR. */
    int (*get)(nx_cache_call *call, const char *key, size_t klen, nx_str *out);
    /* ttl_ms is resolved (never 0); NX_CACHE_FOREVER keeps it until evicted. */
    int (*set)(nx_cache_call *call, const char *key, size_t klen, const void *val, size_t vlen,
               uint64_t ttl_ms);
    /* n keys at once (out[i].ptr NULL for a miss): NX_OK or NX_ERR. NULL: get each. */
    int (*get_many)(nx_cache_call *call, const nx_str *keys, size_t n, nx_str *out);
    int (*del)(nx_cache_call *call, const char *key, size_t klen);
    /* NX_OK when it exists, NX_CACHE_MISS when not, NX_ERR. */
    int (*exists)(nx_cache_call *call, const char *key, size_t klen);
    int (*incr)(nx_cache_call *call, const char *key, size_t klen, int64_t delta, uint64_t ttl_ms,
                int64_t *out);
    int (*del_prefix)(nx_cache_call *call, const char *prefix, size_t plen);
    /* Per worker, after fork (open nothing yet, or a subscriber) and at its exit. */
    int (*worker_start)(const nx_cache_settings *s, nx_loop *loop);
    void (*worker_stop)(void);
    /* A readiness verdict: true, or false with a reason. */
    bool (*ready)(const char **why);
    /*
     * Messages between instances, for a backend that carries them (NULL members: the
     * instance's own ring carries them, to its workers only). publish sends one message to
     * every subscriber of every instance, this worker's included; subscribe starts, in a
     * worker, receiving the n channels and calls deliver for each message, in the loop,
     * outside any coroutine, reconnecting by itself after an outage.
     */
    int (*publish)(nx_cache_call *call, const char *channel, size_t clen, const void *data,
                   size_t len);
    int (*subscribe)(nx_loop *loop, const char *const *channels, size_t n,
                     nx_cache_deliver_fn deliver);
} nx_cache_backend;

extern const nx_cache_backend nx_cache_shm_backend;
extern const nx_cache_backend nx_cache_redis_backend;

/* ---- the shared memory segment (shm.c) ---- */

/*
 * Maps the segment of size bytes, shared by the processes forked after. Called by the
 * master (and tests) before forking. NX_OK / NX_ERR (errno).
 */
int nx_cache_shm_create(uint64_t size);
void nx_cache_shm_destroy(void);

/* Counters of the segment (all workers): for metrics and tests. */
typedef struct nx_cache_shm_stats {
    uint64_t entries;
    uint64_t bytes_used;
    uint64_t evictions;
    uint64_t expired;
} nx_cache_shm_stats;

void nx_cache_shm_stats_get(nx_cache_shm_stats *out);

/* ---- life cycle (cache.c) ---- */

struct nx_config;
/* Reads cache.* into s (the values were checked by the configuration). */
int nx_cache_settings_load(nx_cache_settings *s, const struct nx_config *cfg);
void nx_cache_settings_free(nx_cache_settings *s);

/* In the master before forking: maps the memory cache's segment. NX_OK / NX_ERR (errno). */
int nx_cache_prepare(const nx_cache_settings *s);

/* In a worker after fork, and at its exit. */
int nx_cache_worker_start(const nx_cache_settings *s, nx_loop *loop);
void nx_cache_worker_stop(void);

/* The readiness check `cache`. */
bool nx_cache_ready(const char **why);

/* ---- pub/sub within an instance (pubsub.c) ---- */

/* In the master before forking: the shared message ring. NX_OK / NX_ERR (errno). */
int nx_pubsub_prepare(void);
/* The eventfd the master polls for published messages (-1 before prepare). */
int nx_pubsub_master_fd(void);
/* In the master, just before forking a worker: the eventfd that worker will be signalled on. */
int nx_pubsub_new_worker_fd(void);
/* In the master when its fd is readable: signals each worker's eventfd (-1 entries skipped). */
void nx_pubsub_relay(const int *worker_fds, size_t n);
/* In a worker: starts reading the ring when signalled. */
int nx_pubsub_worker_start(nx_loop *loop);
/* A plugin being unloaded loses its subscriptions. */
void nx_pubsub_remove_owner(const void *owner);
/* The subscribers of channel get the message (what backends' subscribe deliver to). */
void nx_pubsub_dispatch(const char *channel, size_t clen, const void *data, size_t len);
/* The backend this worker's cache runs on (cache.c), NULL before it started. */
const nx_cache_backend *nx_cache_backend_current(void);
/* A call for a backend operation made by request req: NX_OK, or NX_ERR (not started). */
int nx_cache_call_for(nx_req *req, nx_cache_call *call);

/* ---- counters (cache.c), for the metrics of the observability issue ---- */

typedef struct nx_cache_counters {
    uint64_t hits;
    uint64_t misses;
    uint64_t errors;
    uint64_t sets;
    uint64_t deletes;
} nx_cache_counters;

/* This worker's counters. */
const nx_cache_counters *nx_cache_counters_get(void);

#endif
