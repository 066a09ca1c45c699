/*
 * nexus/cache.h - the cache: one API over the shared memory cache and Redis.
 *
 * cache.type selects the backend. `memory` (the default) is one cache shared by every
 * worker of the instance: a segment the master maps before forking, bounded by cache.size,
 * evicting the least recently used entries. `redis` talks to a Redis server through a pool
 * of connections per worker, on the event loop: a call parks only its request.
 *
 * The cache is never the truth: every failure (Redis down, a timeout) is answered as a miss
 * and counted, so a handler falls back to the database instead of failing. Values are bytes
 * (a JSON text, a serialized object); keys are text up to 250 bytes. Values returned are
 * copied into the request's arena.
 *
 *   nx_str v;
 *   if (nx_cache_get(req, "todo:42", &v))
 *       return nx_res_body(res, "application/json", v.ptr, v.len);
 *   ... read from the database, then:
 *   nx_cache_set(req, "todo:42", json, len, 60000);
 */
#ifndef NEXUS_CACHE_H
#define NEXUS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nexus/http.h>
#include <nexus/plugin.h>

#define NX_CACHE_KEY_MAX 250

/* A ttl of 0 means cache.default_ttl; NX_CACHE_FOREVER keeps the entry until evicted. */
#define NX_CACHE_FOREVER UINT64_MAX

/* True on a hit, with the value in *out (in the request's arena, NUL-terminated). */
bool nx_cache_get(nx_req *req, const char *key, nx_str *out);

/*
 * n keys at once (one round trip with Redis): values[i] gets the value of keys[i], or
 * {NULL, 0} for a miss. Returns the number of hits (a failure is n misses).
 */
size_t nx_cache_get_many(nx_req *req, const char *const *keys, size_t n, nx_str *values);

/* Stores value under key for ttl_ms. NX_OK, or NX_ERR (counted; the cache stays usable). */
int nx_cache_set(nx_req *req, const char *key, const void *value, size_t len, uint64_t ttl_ms);

/* Removes key. NX_OK whether or not it existed; NX_ERR when the backend failed. */
int nx_cache_delete(nx_req *req, const char *key);

/* True when key holds a live value. */
bool nx_cache_exists(nx_req *req, const char *key);

/*
 * Adds delta to the integer stored at key (a missing key counts as 0 and is created with
 * ttl_ms) and stores the result in *out. NX_ERR when the value is not an integer or the
 * backend failed. Atomic across workers and, with Redis, across instances.
 */
int nx_cache_incr(nx_req *req, const char *key, int64_t delta, uint64_t ttl_ms, int64_t *out);

/*
 * Removes every key starting with prefix. NX_OK, or NX_ERR. With Redis this scans the
 * keyspace (SCAN MATCH), so keep it for invalidation, not for every request.
 */
int nx_cache_delete_prefix(nx_req *req, const char *prefix);

/*
 * Computes a value once for all who ask for it at the same time. Returns the cached value
 * of key when there is one; otherwise one caller runs compute (which fills *value, in the
 * request's arena, and returns NX_OK, or NX_ERR), stores the value for ttl_ms and hands it
 * to every other request of the worker waiting for the same key, while requests of other
 * workers and instances wait for the value to appear in the cache instead of computing it
 * too. A waiter whose computer failed or vanished computes itself. NX_OK with *out, or
 * NX_ERR when compute failed (or the request's time ran out waiting).
 */
typedef int (*nx_cache_compute_fn)(nx_req *req, void *arg, nx_str *value);

int nx_cache_get_or_compute(nx_req *req, const char *key, uint64_t ttl_ms,
                            nx_cache_compute_fn compute, void *arg, nx_str *out);

/* ---- whole responses ---------------------------------------------------------------- */

/*
 * Answers the request from the response cached under key (status, content type, body) and
 * returns true, when there is one and none of its tags was invalidated since it was stored.
 * Other headers are not cached.
 */
bool nx_cache_serve(nx_req *req, nx_res *res, const char *key);

/*
 * Keeps the response the handler has set (not a file body) under key for ttl_ms, labelled
 * with tags (a NULL-terminated array of up to 16 names of 1 to 100 bytes, or NULL).
 * NX_OK / NX_ERR.
 */
int nx_cache_store(nx_req *req, const nx_res *res, const char *key, uint64_t ttl_ms,
                   const char *const *tags);

/*
 * Makes every response stored with tag stale at once, in every worker (and, with Redis,
 * every instance). Invalidation by key prefix is nx_cache_delete_prefix.
 */
int nx_cache_invalidate_tag(nx_req *req, const char *tag);

/* ---- publish and subscribe ---------------------------------------------------------- */

/*
 * A subscriber: called in every worker for every message published on its channel, in the
 * worker's loop outside any request (it must not wait; a cache or database call there
 * fails). channel is NUL-terminated; data holds len bytes and is valid during the call.
 */
typedef void (*nx_message_fn)(const char *channel, const void *data, size_t len);

/* Subscribes fn to channel (1 to 200 bytes), from a plugin's init. NX_OK / NX_ERR. */
int nx_subscribe(nx_plugin *p, const char *channel, nx_message_fn fn);

/*
 * Publishes len bytes (at most 64 KiB) on channel to every worker of this instance, the
 * caller's own included, and with cache.type redis to every worker of every instance using
 * that Redis. NX_OK, or NX_ERR.
 */
int nx_publish(nx_req *req, const char *channel, const void *data, size_t len);

#endif
