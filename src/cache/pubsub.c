/*
 * pubsub.c - publish and subscribe between the workers of one instance.
 *
 * Messages go through a ring in memory shared by the master and every worker, mapped by the
 * master before it forks. A publisher appends a record under the ring's lock (dropping the
 * oldest records when it is full) and signals the master through one eventfd; the master
 * relays the signal to the eventfd each worker got at its start. A signalled worker reads
 * every record it has not seen and calls the subscribers of each record's channel, in its
 * loop, outside any request. A worker that fell so far behind that records were dropped
 * before it read them logs how many it missed.
 *
 * Subscriptions are made by plugins at init, in the master, and inherited by the workers;
 * a plugin unloaded by a reload loses its own.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <nexus/log.h>

#include "cache/cache_impl.h"
#include "core/util.h"
#include "http/exchange.h"

#define RING_BYTES (1u << 20)
#define CHANNEL_MAX 200
#define MESSAGE_MAX (64u << 10)

typedef struct record {
    uint64_t seq;
    uint32_t clen, len;
} record;

typedef struct ring {
    pthread_mutex_t lock;
    uint64_t seq;  /* records written */
    uint64_t head; /* bytes written since the start: the next record goes here */
    uint64_t tail; /* the oldest byte still held */
    uint64_t cap;
    int publish_fd; /* eventfd the master watches */
    char data[];
} ring;

typedef struct sub {
    const void *owner;
    char *channel;
    nx_message_fn fn;
} sub;

static ring *R;
static sub *subs;
static size_t nsubs;

/* This worker's side. */
static struct {
    int fd; /* the eventfd the master signals */
    nx_io io;
    nx_loop *loop;
    uint64_t next; /* the byte it reads next */
} W = {.fd = -1};

/* ---- subscriptions ---- */

int nx_subscribe(nx_plugin *p, const char *channel, nx_message_fn fn)
{
    if (!channel || !*channel || strlen(channel) > CHANNEL_MAX || !fn) {
        nx_log_error("plugin %s: nx_subscribe needs a channel of 1 to %d bytes and a function",
                     nx_plugin_name(p), CHANNEL_MAX);
        return NX_ERR;
    }
    subs = nx_xrealloc(subs, (nsubs + 1) * sizeof(*subs));
    subs[nsubs++] = (sub){.owner = p, .channel = nx_xstrdup(channel), .fn = fn};
    return NX_OK;
}

void nx_pubsub_remove_owner(const void *owner)
{
    size_t k = 0;
    for (size_t i = 0; i < nsubs; i++) {
        if (subs[i].owner == owner)
            free(subs[i].channel);
        else
            subs[k++] = subs[i];
    }
    nsubs = k;
}

/* ---- the ring ---- */

static void ring_lock(void)
{
    if (pthread_mutex_lock(&R->lock) == EOWNERDEAD) {
        /* A process died while writing: what it wrote cannot be trusted. */
        R->tail = R->head;
        pthread_mutex_consistent(&R->lock);
    }
}

static void ring_copy_in(uint64_t at, const void *src, size_t n)
{
    uint64_t o = at % R->cap;
    size_t first = n < R->cap - o ? n : (size_t)(R->cap - o);
    memcpy(R->data + o, src, first);
    memcpy(R->data, (const char *)src + first, n - first);
}

static void ring_copy_out(uint64_t at, void *dst, size_t n)
{
    uint64_t o = at % R->cap;
    size_t first = n < R->cap - o ? n : (size_t)(R->cap - o);
    memcpy(dst, R->data + o, first);
    memcpy((char *)dst + first, R->data, n - first);
}

static uint64_t record_size(uint32_t clen, uint32_t len)
{
    return (sizeof(record) + clen + len + 7) & ~(uint64_t)7;
}

int nx_pubsub_prepare(void)
{
    if (R)
        return NX_OK;
    size_t size = sizeof(ring) + RING_BYTES;
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NX_ERR;
    R = m;
    R->cap = RING_BYTES;
    R->publish_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (R->publish_fd < 0) {
        munmap(m, size);
        R = NULL;
        return NX_ERR;
    }
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&R->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    return NX_OK;
}

int nx_pubsub_master_fd(void)
{
    return R ? R->publish_fd : -1;
}

int nx_publish(nx_req *req, const char *channel, const void *data, size_t len)
{
    size_t clen = channel ? strlen(channel) : 0;
    const nx_cache_backend *be = nx_cache_backend_current();
    if (be && be->publish && clen && clen <= CHANNEL_MAX && len <= MESSAGE_MAX) {
        /* Every instance sharing the backend, this one's workers included. */
        nx_cache_call call;
        if (nx_cache_call_for(req, &call) != NX_OK)
            return NX_ERR;
        if (be->publish(&call, channel, clen, data ? data : "", len) == NX_OK)
            return NX_OK;
        nx_log_warn("request %s: publish on %s failed: %s", req->id, channel, call.error);
        return NX_ERR;
    }
    if (!R || clen == 0 || clen > CHANNEL_MAX || len > MESSAGE_MAX) {
        nx_log_warn("request %s: nx_publish: %s", req ? req->id : "-",
                    !R ? "no message ring in this process"
                       : "a channel of 1 to 200 bytes and a message of at most 64 KiB");
        return NX_ERR;
    }
    uint64_t need = record_size((uint32_t)clen, (uint32_t)len);
    ring_lock();
    while (R->head + need - R->tail > R->cap) {
        record old;
        ring_copy_out(R->tail, &old, sizeof(old));
        R->tail += record_size(old.clen, old.len);
    }
    record rec = {.seq = ++R->seq, .clen = (uint32_t)clen, .len = (uint32_t)len};
    ring_copy_in(R->head, &rec, sizeof(rec));
    ring_copy_in(R->head + sizeof(rec), channel, clen);
    ring_copy_in(R->head + sizeof(rec) + clen, data ? data : "", len);
    R->head += need;
    pthread_mutex_unlock(&R->lock);
    uint64_t one = 1;
    if (write(R->publish_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        return NX_ERR;
    return NX_OK;
}

/* ---- the master's relay ---- */

int nx_pubsub_new_worker_fd(void)
{
    W.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return W.fd;
}

void nx_pubsub_relay(const int *worker_fds, size_t n)
{
    uint64_t count;
    if (!R || read(R->publish_fd, &count, sizeof(count)) < 0)
        return;
    uint64_t one = 1;
    for (size_t i = 0; i < n; i++)
        if (worker_fds[i] >= 0 && write(worker_fds[i], &one, sizeof(one)) < 0 && errno != EAGAIN)
            nx_log_warn("pub/sub: cannot signal a worker: %s", strerror(errno));
}

/* ---- a worker's delivery ---- */

static void deliver(void)
{
    ring_lock();
    bool lost = W.next < R->tail;
    if (lost)
        W.next = R->tail;
    size_t n = (size_t)(R->head - W.next);
    uint64_t first_seq = 0;
    char *copy = n ? nx_xmalloc(n) : NULL;
    if (n) {
        ring_copy_out(W.next, copy, n);
        record r0;
        memcpy(&r0, copy, sizeof(r0));
        first_seq = r0.seq;
    }
    W.next = R->head;
    pthread_mutex_unlock(&R->lock);
    if (lost)
        nx_log_warn("pub/sub: this worker fell behind and missed messages before #%llu",
                    (unsigned long long)first_seq);
    for (size_t o = 0; o < n;) {
        record r;
        memcpy(&r, copy + o, sizeof(r));
        const char *ch = copy + o + sizeof(r);
        nx_pubsub_dispatch(ch, r.clen, ch + r.clen, r.len);
        o += record_size(r.clen, r.len);
    }
    free(copy);
}

void nx_pubsub_dispatch(const char *channel, size_t clen, const void *data, size_t len)
{
    char name[CHANNEL_MAX + 1];
    if (clen > CHANNEL_MAX)
        return;
    memcpy(name, channel, clen);
    name[clen] = '\0';
    for (size_t i = 0; i < nsubs; i++)
        if (strcmp(subs[i].channel, name) == 0)
            subs[i].fn(name, data, len);
}

static void on_signal(nx_loop *loop, nx_io *io, uint32_t events)
{
    uint64_t count;
    while (read(W.fd, &count, sizeof(count)) > 0)
        ;
    deliver();
}

int nx_pubsub_worker_start(nx_loop *loop)
{
    const nx_cache_backend *be = nx_cache_backend_current();
    if (be && be->subscribe) {
        /* The backend carries messages between instances: subscribe to each channel once. */
        const char **channels = nx_xcalloc(nsubs ? nsubs : 1, sizeof(*channels));
        size_t n = 0;
        for (size_t i = 0; i < nsubs; i++) {
            size_t k = 0;
            while (k < n && strcmp(channels[k], subs[i].channel) != 0)
                k++;
            if (k == n)
                channels[n++] = subs[i].channel;
        }
        int rc = n ? be->subscribe(loop, channels, n, nx_pubsub_dispatch) : NX_OK;
        free(channels);
        return rc;
    }
    if (!R || W.fd < 0)
        return NX_OK;
    ring_lock();
    W.next = R->head; /* what was published before this worker started is not its */
    pthread_mutex_unlock(&R->lock);
    W.loop = loop;
    W.io = (nx_io){.fd = W.fd, .cb = on_signal};
    return nx_loop_add(loop, &W.io, EPOLLIN | EPOLLET);
}
