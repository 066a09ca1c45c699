/*
 * loop.c - epoll and a timer heap.
 *
 * One iteration: wait for events no longer than the nearest timer, dispatch them, refresh
 * the clock, fire expired timers, run the tick hooks. The clock is read once per
 * iteration, not per event: every deadline set while handling one batch of events is
 * relative to the same instant, which is also what keeps the hot path free of
 * clock_gettime calls.
 */
#include "core/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <nexus/http.h>

#include "core/util.h"

#define MAX_EVENTS 256
#define MAX_TICKS 8

struct nx_loop {
    int epfd;
    bool stop;
    uint64_t iteration;
    uint64_t now;
    int64_t wall;
    nx_timer **heap;
    size_t nheap, capheap;
    uint64_t *busy_since; /* see nx_loop_watch_busy; NULL when nobody watches */
    struct {
        nx_tick_fn fn;
        void *arg;
    } ticks[MAX_TICKS];
    size_t nticks;
    /* The batch being dispatched, so that a removed io loses its pending event. */
    struct epoll_event *batch;
    int batch_next, batch_n;
};

static void refresh_clock(nx_loop *loop)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    loop->now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    loop->wall = ts.tv_sec;
}

nx_loop *nx_loop_new(void)
{
    int fd = epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0)
        return NULL;
    nx_loop *loop = nx_xcalloc(1, sizeof(*loop));
    loop->epfd = fd;
    refresh_clock(loop);
    return loop;
}

void nx_loop_free(nx_loop *loop)
{
    if (!loop)
        return;
    close(loop->epfd);
    free(loop->heap);
    free(loop);
}

static int ctl(nx_loop *loop, int op, nx_io *io, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = io};
    return epoll_ctl(loop->epfd, op, io->fd, &ev) == 0 ? NX_OK : NX_ERR;
}

int nx_loop_add(nx_loop *loop, nx_io *io, uint32_t events)
{
    return ctl(loop, EPOLL_CTL_ADD, io, events);
}

int nx_loop_mod(nx_loop *loop, nx_io *io, uint32_t events)
{
    return ctl(loop, EPOLL_CTL_MOD, io, events);
}

int nx_loop_del(nx_loop *loop, nx_io *io)
{
    /* An event of this batch not yet dispatched must not reach io: its owner may free it
     * as soon as this returns. */
    for (int i = loop->batch_next; i < loop->batch_n; i++)
        if (loop->batch[i].data.ptr == io)
            loop->batch[i].data.ptr = NULL;
    return ctl(loop, EPOLL_CTL_DEL, io, 0);
}

/* ---- timer heap: heap[i] has children 2i+1, 2i+2; heap_idx stores i + 1 ---- */

static void heap_place(nx_loop *loop, size_t i, nx_timer *t)
{
    loop->heap[i] = t;
    t->heap_idx = i + 1;
}

static void sift_up(nx_loop *loop, size_t i)
{
    nx_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (loop->heap[parent]->when <= t->when)
            break;
        heap_place(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_place(loop, i, t);
}

static void sift_down(nx_loop *loop, size_t i)
{
    nx_timer *t = loop->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= loop->nheap)
            break;
        if (child + 1 < loop->nheap && loop->heap[child + 1]->when < loop->heap[child]->when)
            child++;
        if (t->when <= loop->heap[child]->when)
            break;
        heap_place(loop, i, loop->heap[child]);
        i = child;
    }
    heap_place(loop, i, t);
}

void nx_timer_cancel(nx_loop *loop, nx_timer *t)
{
    if (!t->heap_idx)
        return;
    size_t i = t->heap_idx - 1;
    t->heap_idx = 0;
    nx_timer *last = loop->heap[--loop->nheap];
    if (i == loop->nheap)
        return;
    heap_place(loop, i, last);
    sift_down(loop, i);
    sift_up(loop, last->heap_idx - 1);
}

void nx_timer_set(nx_loop *loop, nx_timer *t, uint64_t when)
{
    if (t->heap_idx) {
        uint64_t old = t->when;
        t->when = when;
        t->armed_in = loop->iteration;
        size_t i = t->heap_idx - 1;
        if (when < old)
            sift_up(loop, i);
        else if (when > old)
            sift_down(loop, i);
        return;
    }
    if (loop->nheap == loop->capheap) {
        loop->capheap = loop->capheap ? loop->capheap * 2 : 64;
        loop->heap = nx_xrealloc(loop->heap, loop->capheap * sizeof(*loop->heap));
    }
    t->when = when;
    t->armed_in = loop->iteration;
    heap_place(loop, loop->nheap++, t);
    sift_up(loop, loop->nheap - 1);
}

size_t nx_loop_timer_count(const nx_loop *loop)
{
    return loop->nheap;
}

uint64_t nx_loop_now(const nx_loop *loop)
{
    return loop->now;
}

int64_t nx_loop_wall(const nx_loop *loop)
{
    return loop->wall;
}

void nx_loop_on_tick(nx_loop *loop, nx_tick_fn fn, void *arg)
{
    NX_ASSERT(loop->nticks < MAX_TICKS);
    loop->ticks[loop->nticks].fn = fn;
    loop->ticks[loop->nticks].arg = arg;
    loop->nticks++;
}

void nx_loop_stop(nx_loop *loop)
{
    loop->stop = true;
}

/*
 * Fires the timers that are due. A timer (re)armed during this iteration waits for the
 * next one even if already due: a callback that re-arms its timer at "now" (or a handler
 * sleeping 0 ms in a loop) would otherwise fire forever without the clock moving or any
 * I/O being served. Stopping at the first such timer delays others due at the same
 * instant by one iteration, which polls with a zero timeout.
 */
static void fire_timers(nx_loop *loop)
{
    while (loop->nheap && loop->heap[0]->when <= loop->now &&
           loop->heap[0]->armed_in != loop->iteration) {
        nx_timer *t = loop->heap[0];
        nx_timer_cancel(loop, t);
        t->cb(loop, t);
    }
}

int nx_loop_run(nx_loop *loop)
{
    struct epoll_event events[MAX_EVENTS];
    loop->stop = false;
    while (!loop->stop) {
        int timeout = -1;
        if (loop->nheap) {
            uint64_t when = loop->heap[0]->when;
            timeout =
                when <= loop->now ? 0 : (int)(when - loop->now > 60000 ? 60000 : when - loop->now);
        }
        if (loop->busy_since)
            __atomic_store_n(loop->busy_since, 0, __ATOMIC_RELAXED);
        int n = epoll_wait(loop->epfd, events, MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR)
            return NX_ERR;
        refresh_clock(loop);
        if (loop->busy_since)
            __atomic_store_n(loop->busy_since, loop->now, __ATOMIC_RELAXED);
        loop->iteration++;
        loop->batch = events;
        loop->batch_n = n;
        for (int i = 0; i < n; i++) {
            nx_io *io = events[i].data.ptr;
            loop->batch_next = i + 1;
            if (io)
                io->cb(loop, io, events[i].events);
        }
        loop->batch_n = 0;
        fire_timers(loop);
        for (size_t i = 0; i < loop->nticks; i++)
            loop->ticks[i].fn(loop, loop->ticks[i].arg);
    }
    return NX_OK;
}

void nx_loop_watch_busy(nx_loop *loop, uint64_t *busy_since)
{
    loop->busy_since = busy_since;
}
