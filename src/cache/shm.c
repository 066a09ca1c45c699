/*
 * shm.c - the memory cache: one segment shared by every worker of an instance.
 *
 * The master maps the segment before forking, so every worker sees the same entries: a
 * value set by one is read by the next request on any other. Its memory is cut the way
 * memcached cuts it: pages of equal size, each given to one size class when first needed
 * and cut into chunks of that class's size; an entry lives in the smallest chunk it fits.
 * Each class keeps its entries in least-recently-used order and evicts from the old end
 * when it has no free chunk and no page is left. A class that never got a page takes one
 * from the class holding the most (its least recently used page's entries are evicted),
 * so a change in the sizes stored cannot starve a class.
 *
 * Everything is addressed by offsets from the segment's start (workers may map it at the
 * same address, but offsets keep that an accident) and guarded by one process-shared
 * robust mutex: operations are short (a lookup, a memcpy). If a worker dies holding it,
 * the next process to lock finds the cache possibly half-changed and empties it: the
 * cache is never the truth, so losing it costs misses, not data.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <nexus/http.h>

#include "cache/cache_impl.h"
#include "core/util.h"

#define NCLASS 48
#define MIN_CHUNK 64
#define MAX_PAGES 65536
#define NO_CLASS 0xff

typedef struct item {
    uint64_t hnext;      /* next in the hash chain (offset, 0 = none) */
    uint64_t prev, next; /* the class's LRU list, or its free list */
    uint64_t hash;
    uint64_t expires; /* monotonic ms; UINT64_MAX = never */
    uint32_t klen, vlen;
    uint8_t cls;
    uint8_t in_use;
    char data[]; /* key, then value, then a NUL */
} item;

typedef struct klass {
    uint64_t size;      /* chunk size */
    uint64_t free_head; /* free chunks */
    uint64_t lru_head;  /* most recently used */
    uint64_t lru_tail;  /* least recently used */
    uint64_t pages;     /* pages given to the class */
    uint64_t items;
} klass;

typedef struct head {
    pthread_mutex_t lock;
    uint64_t size;
    uint64_t page_size;
    uint64_t npages, pages_used;
    uint64_t pages_off; /* first page */
    uint64_t nbuckets;  /* a power of two */
    uint64_t buckets_off;
    int nclass;
    klass cls[NCLASS];
    uint8_t page_class[MAX_PAGES];
    nx_cache_shm_stats stats;
} head;

static head *H;
static size_t H_len;

static inline item *at(uint64_t off)
{
    return (item *)((char *)H + off);
}

static inline uint64_t off_of(const item *it)
{
    return (uint64_t)((const char *)it - (const char *)H);
}

static inline uint64_t *buckets(void)
{
    return (uint64_t *)((char *)H + H->buckets_off);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t hash_key(const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)k[i]) * 1099511628211ULL;
    return h ? h : 1;
}

/* ---- layout ---- */

static void reset_all(void)
{
    memset(buckets(), 0, H->nbuckets * sizeof(uint64_t));
    for (int c = 0; c < H->nclass; c++) {
        H->cls[c].free_head = H->cls[c].lru_head = H->cls[c].lru_tail = 0;
        H->cls[c].pages = H->cls[c].items = 0;
    }
    memset(H->page_class, NO_CLASS, sizeof(H->page_class));
    H->pages_used = 0;
    H->stats.entries = 0;
    H->stats.bytes_used = 0;
}

int nx_cache_shm_create(uint64_t size)
{
    if (H)
        return NX_OK;
    if (size < 256 * 1024)
        size = 256 * 1024;
    H_len = (size_t)size + sizeof(head);
    void *m = mmap(NULL, H_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NX_ERR;
    H = m;
    memset(H, 0, sizeof(*H));
    H->size = size;
    /* Pages of 1 MiB for a large cache, smaller for a small one so that it holds enough
     * pages to share between classes: the largest value is a page less the headers. */
    uint64_t ps = size / 64;
    ps = ps > (1u << 20) ? (1u << 20) : ps < (16u << 10) ? (16u << 10) : ps;
    ps &= ~(uint64_t)15;
    H->page_size = ps;
    uint64_t nb = 1024;
    while (nb < size / 512)
        nb <<= 1;
    H->nbuckets = nb;
    H->buckets_off = (sizeof(head) + 15) & ~(uint64_t)15;
    H->pages_off = (H->buckets_off + nb * sizeof(uint64_t) + 15) & ~(uint64_t)15;
    H->npages = (H_len - H->pages_off) / ps;
    if (H->npages > MAX_PAGES)
        H->npages = MAX_PAGES;
    /* Classes grow by a quarter: little waste inside a chunk, few classes. */
    uint64_t cs = MIN_CHUNK;
    int n = 0;
    while (n < NCLASS - 1 && cs < ps) {
        H->cls[n++].size = cs;
        uint64_t next = (cs + cs / 4 + 15) & ~(uint64_t)15;
        cs = next > cs ? next : cs + 16;
    }
    H->cls[n++].size = ps;
    H->nclass = n;

    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&H->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    reset_all();
    return NX_OK;
}

void nx_cache_shm_destroy(void)
{
    if (H)
        munmap(H, H_len);
    H = NULL;
}

static void lock(void)
{
    int rc = pthread_mutex_lock(&H->lock);
    if (rc == EOWNERDEAD) {
        /* A worker died in the middle of a change: start over empty. */
        reset_all();
        pthread_mutex_consistent(&H->lock);
    }
}

static void unlock(void)
{
    pthread_mutex_unlock(&H->lock);
}

/* ---- lists ---- */

static void list_unlink(uint64_t *head_off, uint64_t *tail_off, item *it)
{
    if (it->prev)
        at(it->prev)->next = it->next;
    else
        *head_off = it->next;
    if (it->next)
        at(it->next)->prev = it->prev;
    else if (tail_off)
        *tail_off = it->prev;
    it->prev = it->next = 0;
}

static void list_push(uint64_t *head_off, uint64_t *tail_off, item *it)
{
    uint64_t o = off_of(it);
    it->prev = 0;
    it->next = *head_off;
    if (*head_off)
        at(*head_off)->prev = o;
    else if (tail_off)
        *tail_off = o;
    *head_off = o;
}

/* ---- entries ---- */

static item *find(const char *key, size_t klen, uint64_t h, uint64_t **link)
{
    uint64_t *p = &buckets()[h & (H->nbuckets - 1)];
    while (*p) {
        item *it = at(*p);
        if (it->hash == h && it->klen == klen && memcmp(it->data, key, klen) == 0) {
            if (link)
                *link = p;
            return it;
        }
        p = &it->hnext;
    }
    return NULL;
}

/* Takes an entry out of the hash and its LRU list, and frees its chunk. */
static void drop(item *it)
{
    uint64_t *p = &buckets()[it->hash & (H->nbuckets - 1)];
    while (*p && *p != off_of(it))
        p = &at(*p)->hnext;
    if (*p)
        *p = it->hnext;
    klass *k = &H->cls[it->cls];
    list_unlink(&k->lru_head, &k->lru_tail, it);
    k->items--;
    H->stats.entries--;
    H->stats.bytes_used -= k->size;
    it->in_use = 0;
    list_push(&k->free_head, NULL, it);
}

static int class_for(uint64_t need)
{
    for (int c = 0; c < H->nclass; c++)
        if (H->cls[c].size >= need)
            return c;
    return -1;
}

static void cut_page(uint64_t page, int c)
{
    klass *k = &H->cls[c];
    H->page_class[page] = (uint8_t)c;
    k->pages++;
    uint64_t base = H->pages_off + page * H->page_size;
    for (uint64_t o = 0; o + k->size <= H->page_size; o += k->size) {
        item *it = at(base + o);
        memset(it, 0, sizeof(*it));
        it->cls = (uint8_t)c;
        list_push(&k->free_head, NULL, it);
    }
}

/* Frees a page of the class holding the most pages, for class c that has none. */
static bool steal_page(int c)
{
    int victim = -1;
    for (int v = 0; v < H->nclass; v++)
        if (v != c && H->cls[v].pages > 1 && (victim < 0 || H->cls[v].pages > H->cls[victim].pages))
            victim = v;
    if (victim < 0)
        return false;
    klass *k = &H->cls[victim];
    /* The page of its least recently used entry, else its first page. */
    uint64_t page = UINT64_MAX;
    if (k->lru_tail)
        page = (k->lru_tail - H->pages_off) / H->page_size;
    else
        for (uint64_t p = 0; p < H->pages_used && page == UINT64_MAX; p++)
            if (H->page_class[p] == victim)
                page = p;
    if (page == UINT64_MAX)
        return false;
    uint64_t base = H->pages_off + page * H->page_size;
    for (uint64_t o = 0; o + k->size <= H->page_size; o += k->size) {
        item *it = at(base + o);
        if (it->in_use) {
            drop(it);
            H->stats.evictions++;
        }
        list_unlink(&k->free_head, NULL, it);
    }
    k->pages--;
    cut_page(page, c);
    return true;
}

/* A free chunk of class c, evicting if it must; NULL when the class cannot get one. */
static item *alloc_chunk(int c)
{
    klass *k = &H->cls[c];
    if (!k->free_head && H->pages_used < H->npages)
        cut_page(H->pages_used++, c);
    if (!k->free_head && k->lru_tail) {
        drop(at(k->lru_tail));
        H->stats.evictions++;
    }
    if (!k->free_head && !steal_page(c))
        return NULL;
    item *it = at(k->free_head);
    list_unlink(&k->free_head, NULL, it);
    return it;
}

static bool live(const item *it, uint64_t now)
{
    return it->expires > now;
}

/* ---- the backend ---- */

static int shm_get(nx_cache_call *call, const char *key, size_t klen, nx_str *out)
{
    uint64_t h = hash_key(key, klen), now = now_ms();
    lock();
    item *it = find(key, klen, h, NULL);
    if (it && !live(it, now)) {
        drop(it);
        H->stats.expired++;
        it = NULL;
    }
    if (!it) {
        unlock();
        return NX_CACHE_MISS;
    }
    klass *k = &H->cls[it->cls];
    list_unlink(&k->lru_head, &k->lru_tail, it);
    list_push(&k->lru_head, &k->lru_tail, it);
    out->ptr = nx_arena_strndup(call->arena, it->data + it->klen, it->vlen);
    out->len = it->vlen;
    unlock();
    return NX_OK;
}

/* Stores under the lock held; NX_ERR when the value cannot fit in the cache at all. */
static int store(nx_cache_call *call, const char *key, size_t klen, uint64_t h, const void *val,
                 size_t vlen, uint64_t expires)
{
    item *old = find(key, klen, h, NULL);
    if (old)
        drop(old);
    uint64_t need = sizeof(item) + klen + vlen + 1;
    int c = class_for(need);
    if (c < 0) {
        snprintf(call->error, sizeof(call->error),
                 "a value of %zu bytes is larger than the memory cache's largest entry (%llu)",
                 vlen, (unsigned long long)(H->page_size - sizeof(item) - klen - 1));
        return NX_ERR;
    }
    item *it = alloc_chunk(c);
    if (!it) {
        snprintf(call->error, sizeof(call->error), "no room in the memory cache");
        return NX_ERR;
    }
    it->hash = h;
    it->klen = (uint32_t)klen;
    it->vlen = (uint32_t)vlen;
    it->expires = expires;
    it->cls = (uint8_t)c;
    it->in_use = 1;
    memcpy(it->data, key, klen);
    memcpy(it->data + klen, val, vlen);
    it->data[klen + vlen] = '\0';
    uint64_t *b = &buckets()[h & (H->nbuckets - 1)];
    it->hnext = *b;
    *b = off_of(it);
    klass *k = &H->cls[c];
    list_push(&k->lru_head, &k->lru_tail, it);
    k->items++;
    H->stats.entries++;
    H->stats.bytes_used += k->size;
    return NX_OK;
}

static uint64_t expiry(uint64_t ttl_ms)
{
    if (ttl_ms == NX_CACHE_FOREVER)
        return UINT64_MAX;
    return now_ms() + ttl_ms;
}

static int shm_set(nx_cache_call *call, const char *key, size_t klen, const void *val, size_t vlen,
                   uint64_t ttl_ms)
{
    uint64_t h = hash_key(key, klen), exp = expiry(ttl_ms);
    lock();
    int rc = store(call, key, klen, h, val, vlen, exp);
    unlock();
    return rc;
}

static int shm_del(nx_cache_call *call, const char *key, size_t klen)
{
    uint64_t h = hash_key(key, klen);
    lock();
    item *it = find(key, klen, h, NULL);
    if (it)
        drop(it);
    unlock();
    return NX_OK;
}

static int shm_exists(nx_cache_call *call, const char *key, size_t klen)
{
    uint64_t h = hash_key(key, klen), now = now_ms();
    lock();
    item *it = find(key, klen, h, NULL);
    int rc = it && live(it, now) ? NX_OK : NX_CACHE_MISS;
    unlock();
    return rc;
}

static int shm_incr(nx_cache_call *call, const char *key, size_t klen, int64_t delta,
                    uint64_t ttl_ms, int64_t *out)
{
    uint64_t h = hash_key(key, klen), now = now_ms();
    lock();
    item *it = find(key, klen, h, NULL);
    int64_t v = 0;
    uint64_t exp = expiry(ttl_ms);
    if (it && live(it, now)) {
        char num[32];
        char *end;
        if (it->vlen == 0 || it->vlen >= sizeof(num)) {
            unlock();
            snprintf(call->error, sizeof(call->error), "the value is not an integer");
            return NX_ERR;
        }
        memcpy(num, it->data + it->klen, it->vlen);
        num[it->vlen] = '\0';
        errno = 0;
        v = strtoll(num, &end, 10);
        if (*end || errno) {
            unlock();
            snprintf(call->error, sizeof(call->error), "the value is not an integer");
            return NX_ERR;
        }
        exp = it->expires; /* an increment keeps the entry's expiry */
    }
    if ((delta > 0 && v > INT64_MAX - delta) || (delta < 0 && v < INT64_MIN - delta)) {
        unlock();
        snprintf(call->error, sizeof(call->error), "the increment would overflow");
        return NX_ERR;
    }
    v += delta;
    char text[32];
    int n = snprintf(text, sizeof(text), "%lld", (long long)v);
    int rc = store(call, key, klen, h, text, (size_t)n, exp);
    unlock();
    if (rc == NX_OK)
        *out = v;
    return rc;
}

static int shm_del_prefix(nx_cache_call *call, const char *prefix, size_t plen)
{
    lock();
    uint64_t *b = buckets();
    for (uint64_t i = 0; i < H->nbuckets; i++) {
        uint64_t o = b[i];
        while (o) {
            item *it = at(o);
            o = it->hnext;
            if (it->klen >= plen && memcmp(it->data, prefix, plen) == 0)
                drop(it);
        }
    }
    unlock();
    return NX_OK;
}

static int shm_worker_start(const nx_cache_settings *s, nx_loop *loop)
{
    return H ? NX_OK : NX_ERR;
}

static void shm_worker_stop(void)
{
}

static bool shm_ready(const char **why)
{
    return true;
}

void nx_cache_shm_stats_get(nx_cache_shm_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!H)
        return;
    lock();
    *out = H->stats;
    unlock();
}

const nx_cache_backend nx_cache_shm_backend = {
    .name = "memory",
    .get = shm_get,
    .set = shm_set,
    .del = shm_del,
    .exists = shm_exists,
    .incr = shm_incr,
    .del_prefix = shm_del_prefix,
    .worker_start = shm_worker_start,
    .worker_stop = shm_worker_stop,
    .ready = shm_ready,
};
