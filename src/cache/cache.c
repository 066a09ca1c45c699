/*
 * cache.c - the cache API of <nexus/cache.h> over the memory and Redis backends.
 *
 * Every backend failure is answered as a miss (or NX_ERR for writes) and counted: a cache
 * outage slows requests down to the database's pace but fails none of them. The failure is
 * logged once per burst, not once per request.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nexus/log.h>

#include "cache/cache_impl.h"
#include "config/config.h"
#include "core/coro.h"
#include "core/util.h"
#include "core/wait.h"
#include "http/exchange.h"

/* A backend failure is logged at most this often per worker. */
#define LOG_EVERY_MS 5000

static struct {
    const nx_cache_settings *s;
    const nx_cache_backend *be;
    nx_loop *loop;
    bool started;
    uint64_t last_log;
    uint64_t unlogged;
} C;

static nx_cache_counters counters;

const nx_cache_counters *nx_cache_counters_get(void)
{
    return &counters;
}

/* ---- settings ---- */

static const char *get(const nx_config *cfg, const char *key)
{
    const char *v = nx_config_get(cfg, key, NULL);
    return v ? v : "";
}

static uint64_t get_u64(const nx_config *cfg, const char *key, bool duration)
{
    uint64_t v = 0;
    if (duration)
        nx_parse_duration_ms(get(cfg, key), &v);
    else
        nx_parse_size(get(cfg, key), &v);
    return v;
}

int nx_cache_settings_load(nx_cache_settings *s, const nx_config *cfg)
{
    memset(s, 0, sizeof(*s));
    s->kind = strcmp(get(cfg, "cache.type"), "redis") == 0 ? NX_CACHE_REDIS : NX_CACHE_MEMORY;
    s->size = get_u64(cfg, "cache.size", false);
    s->default_ttl_ms = get_u64(cfg, "cache.default_ttl", true);
    s->redis_host = nx_xstrdup(get(cfg, "cache.redis.host"));
    s->redis_port = atoi(get(cfg, "cache.redis.port"));
    s->redis_password = nx_xstrdup(get(cfg, "cache.redis.password"));
    s->redis_db = atoi(get(cfg, "cache.redis.db"));
    s->redis_max_connections = atoi(get(cfg, "cache.redis.max_connections"));
    s->redis_connect_timeout_ms = get_u64(cfg, "cache.redis.connect_timeout", true);
    s->redis_command_timeout_ms = get_u64(cfg, "cache.redis.command_timeout", true);
    return NX_OK;
}

void nx_cache_settings_free(nx_cache_settings *s)
{
    free(s->redis_host);
    free(s->redis_password);
    memset(s, 0, sizeof(*s));
}

/* ---- life cycle ---- */

static const nx_cache_backend *backend_of(nx_cache_kind k)
{
    return k == NX_CACHE_REDIS ? &nx_cache_redis_backend : &nx_cache_shm_backend;
}

int nx_cache_prepare(const nx_cache_settings *s)
{
    if (s->kind == NX_CACHE_MEMORY)
        return nx_cache_shm_create(s->size);
    return NX_OK;
}

int nx_cache_worker_start(const nx_cache_settings *s, nx_loop *loop)
{
    memset(&C, 0, sizeof(C));
    C.s = s;
    C.be = backend_of(s->kind);
    C.loop = loop;
    if (!C.be || C.be->worker_start(s, loop) != NX_OK)
        return NX_ERR;
    C.started = true;
    return NX_OK;
}

void nx_cache_worker_stop(void)
{
    if (C.started)
        C.be->worker_stop();
    C.started = false;
}

bool nx_cache_ready(const char **why)
{
    if (!C.started)
        return true;
    return C.be->ready(why);
}

/* ---- calls ---- */

static bool begin(nx_req *req, const char *key, nx_cache_call *call, size_t *klen)
{
    if (!C.started || !key)
        return false;
    *klen = strlen(key);
    if (*klen == 0 || *klen > NX_CACHE_KEY_MAX) {
        counters.errors++;
        nx_log_warn("request %s: cache key of %zu bytes refused (1 to %d)", req->id, *klen,
                    NX_CACHE_KEY_MAX);
        return false;
    }
    uint64_t now = nx_loop_now(C.loop);
    *call = (nx_cache_call){.loop = C.loop, .arena = req->arena, .gone = &req->client_gone};
    call->deadline = req->deadline;
    if (C.s->kind == NX_CACHE_REDIS && C.s->redis_command_timeout_ms) {
        uint64_t d = now + C.s->redis_command_timeout_ms;
        if (!call->deadline || d < call->deadline)
            call->deadline = d;
    }
    return true;
}

const nx_cache_backend *nx_cache_backend_current(void)
{
    return C.started ? C.be : NULL;
}

int nx_cache_call_for(nx_req *req, nx_cache_call *call)
{
    size_t klen;
    return begin(req, "-", call, &klen) ? NX_OK : NX_ERR;
}

static void failed(nx_req *req, nx_cache_call *call, const char *op)
{
    counters.errors++;
    uint64_t now = nx_loop_now(C.loop);
    if (C.last_log && now - C.last_log < LOG_EVERY_MS) {
        C.unlogged++;
        return;
    }
    nx_log_warn("request %s: cache %s failed (%s backend): %s%s", req->id, op, C.be->name,
                call->error[0] ? call->error : "error",
                C.unlogged ? " (and earlier failures not logged)" : "");
    C.last_log = now;
    C.unlogged = 0;
}

static uint64_t ttl_of(uint64_t ttl_ms)
{
    return ttl_ms ? ttl_ms : C.s->default_ttl_ms ? C.s->default_ttl_ms : NX_CACHE_FOREVER;
}

bool nx_cache_get(nx_req *req, const char *key, nx_str *out)
{
    nx_cache_call call;
    size_t klen;
    out->ptr = NULL;
    out->len = 0;
    if (!begin(req, key, &call, &klen)) {
        counters.misses++;
        return false;
    }
    int rc = C.be->get(&call, key, klen, out);
    if (rc == NX_OK) {
        counters.hits++;
        return true;
    }
    if (rc == NX_ERR)
        failed(req, &call, "get");
    counters.misses++;
    out->ptr = NULL;
    out->len = 0;
    return false;
}

size_t nx_cache_get_many(nx_req *req, const char *const *keys, size_t n, nx_str *values)
{
    for (size_t i = 0; i < n; i++)
        values[i] = (nx_str){NULL, 0};
    if (!C.started || n == 0)
        return 0;
    if (!C.be->get_many) {
        size_t hits = 0;
        for (size_t i = 0; i < n; i++)
            hits += nx_cache_get(req, keys[i], &values[i]);
        return hits;
    }
    nx_cache_call call;
    size_t klen;
    nx_str *k = nx_arena_alloc(req->arena, n * sizeof(*k));
    for (size_t i = 0; i < n; i++) {
        if (!begin(req, keys[i], &call, &klen)) {
            counters.misses += n;
            return 0;
        }
        k[i] = (nx_str){keys[i], klen};
    }
    if (C.be->get_many(&call, k, n, values) != NX_OK) {
        failed(req, &call, "get_many");
        for (size_t i = 0; i < n; i++)
            values[i] = (nx_str){NULL, 0};
        counters.misses += n;
        return 0;
    }
    size_t hits = 0;
    for (size_t i = 0; i < n; i++)
        hits += values[i].ptr != NULL;
    counters.hits += hits;
    counters.misses += n - hits;
    return hits;
}

int nx_cache_set(nx_req *req, const char *key, const void *value, size_t len, uint64_t ttl_ms)
{
    nx_cache_call call;
    size_t klen;
    if (!begin(req, key, &call, &klen))
        return NX_ERR;
    counters.sets++;
    if (C.be->set(&call, key, klen, value ? value : "", value ? len : 0, ttl_of(ttl_ms)) == NX_OK)
        return NX_OK;
    failed(req, &call, "set");
    return NX_ERR;
}

int nx_cache_delete(nx_req *req, const char *key)
{
    nx_cache_call call;
    size_t klen;
    if (!begin(req, key, &call, &klen))
        return NX_ERR;
    counters.deletes++;
    if (C.be->del(&call, key, klen) == NX_OK)
        return NX_OK;
    failed(req, &call, "delete");
    return NX_ERR;
}

bool nx_cache_exists(nx_req *req, const char *key)
{
    nx_cache_call call;
    size_t klen;
    if (!begin(req, key, &call, &klen))
        return false;
    int rc = C.be->exists(&call, key, klen);
    if (rc == NX_ERR)
        failed(req, &call, "exists");
    return rc == NX_OK;
}

int nx_cache_incr(nx_req *req, const char *key, int64_t delta, uint64_t ttl_ms, int64_t *out)
{
    nx_cache_call call;
    size_t klen;
    if (!begin(req, key, &call, &klen))
        return NX_ERR;
    int64_t v = 0;
    if (C.be->incr(&call, key, klen, delta, ttl_of(ttl_ms), &v) != NX_OK) {
        failed(req, &call, "incr");
        return NX_ERR;
    }
    if (out)
        *out = v;
    return NX_OK;
}

int nx_cache_delete_prefix(nx_req *req, const char *prefix)
{
    nx_cache_call call;
    size_t plen;
    if (!prefix || !*prefix) {
        /* The empty prefix would empty the cache: refused, as a typo most likely. */
        counters.errors++;
        return NX_ERR;
    }
    if (!begin(req, prefix, &call, &plen))
        return NX_ERR;
    call.deadline = req->deadline; /* a walk of the keyspace, not one command */
    if (C.be->del_prefix(&call, prefix, plen) == NX_OK)
        return NX_OK;
    failed(req, &call, "delete_prefix");
    return NX_ERR;
}

/* ---- get or compute ---- */

/* Polls for another process's computation: 2 ms doubling to 50 ms. */
#define POLL_MIN_MS 2
#define POLL_MAX_MS 50
/* The cross-process lock outlives a computer that died by this much at most. */
#define LOCK_TTL_MS 10000

/* A computation under way in this worker, with the requests waiting for it. */
typedef struct flight {
    struct flight *next;
    const char *key;
    struct waiter_node *waiters;
    bool done, ok;
    char *value; /* malloc'd copy for the waiters, when ok */
    size_t len;
    int refs; /* the computer and each waiter */
} flight;

typedef struct waiter_node {
    struct waiter_node *next;
    nx_wake wake;
} waiter_node;

static flight *flights;

static flight *flight_find(const char *key)
{
    for (flight *f = flights; f; f = f->next)
        if (!f->done && strcmp(f->key, key) == 0)
            return f;
    return NULL;
}

static void flight_put(flight *f)
{
    if (--f->refs > 0)
        return;
    free(f->value);
    free(f);
}

/* Ends f with the value (or a failure) and wakes its waiters. */
static void flight_land(flight *f, bool ok, const nx_str *v)
{
    for (flight **p = &flights; *p; p = &(*p)->next)
        if (*p == f) {
            *p = f->next;
            break;
        }
    f->done = true;
    f->ok = ok;
    if (ok) {
        f->value = nx_xmalloc(v->len + 1);
        memcpy(f->value, v->ptr, v->len);
        f->value[v->len] = '\0';
        f->len = v->len;
    }
    for (waiter_node *w = f->waiters; w; w = w->next)
        nx_wake_up(&w->wake);
    flight_put(f);
}

/* Waits for another process holding the lock: NX_OK with *out once the value shows. */
static int wait_elsewhere(nx_req *req, const char *key, const char *lock_key, nx_str *out)
{
    uint64_t delay = POLL_MIN_MS;
    for (;;) {
        if (nx_sleep_ms(req, delay) != NX_OK)
            return NX_ERR;
        if (nx_cache_get(req, key, out))
            return NX_OK;
        if (!nx_cache_exists(req, lock_key))
            return NX_ERR; /* the computer gave up or died: compute here */
        delay = delay * 2 > POLL_MAX_MS ? POLL_MAX_MS : delay * 2;
    }
}

int nx_cache_get_or_compute(nx_req *req, const char *key, uint64_t ttl_ms,
                            nx_cache_compute_fn compute, void *arg, nx_str *out)
{
    if (nx_cache_get(req, key, out))
        return NX_OK;
    if (!C.started || !key)
        return compute(req, arg, out);

    flight *f = flight_find(key);
    if (f) {
        /* Another request of this worker computes it: wait for its answer. */
        waiter_node w = {.next = f->waiters};
        f->waiters = &w;
        f->refs++;
        int rc = nx_wait_wakeable(C.loop, &w.wake, req->deadline);
        bool ok = rc == 1 && f->ok;
        if (ok) {
            out->ptr = nx_arena_strndup(req->arena, f->value, f->len);
            out->len = f->len;
        } else if (!f->done) {
            for (waiter_node **p = &f->waiters; *p; p = &(*p)->next)
                if (*p == &w) {
                    *p = w.next;
                    break;
                }
        }
        flight_put(f);
        if (ok)
            return NX_OK;
        if (req->timed_out || req->client_gone || rc != 1)
            return NX_ERR;
        return compute(req, arg, out); /* its computation failed: try here */
    }

    f = nx_xcalloc(1, sizeof(*f));
    f->key = nx_arena_strdup(req->arena, key);
    f->refs = 1;
    f->next = flights;
    flights = f;

    /* Across workers and instances: the first to raise the lock computes. */
    const char *lock_key = nx_arena_printf(req->arena, "nx:lock:%s", key);
    int64_t holders = 1;
    if (strlen(lock_key) <= NX_CACHE_KEY_MAX &&
        nx_cache_incr(req, lock_key, 1, LOCK_TTL_MS, &holders) == NX_OK && holders > 1 &&
        wait_elsewhere(req, key, lock_key, out) == NX_OK) {
        flight_land(f, true, out);
        return NX_OK;
    }
    int rc = compute(req, arg, out);
    if (rc == NX_OK)
        nx_cache_set(req, key, out->ptr, out->len, ttl_ms);
    if (holders == 1)
        nx_cache_delete(req, lock_key);
    flight_land(f, rc == NX_OK, out);
    return rc;
}
