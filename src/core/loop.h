/*
 * core/loop.h - one epoll event loop per worker, with timers.
 *
 * File descriptors are registered once, edge-triggered, with an nx_io embedded in the
 * owner's struct; the loop calls io->cb with the ready events. Timers live in a binary
 * min-heap keyed by expiry in monotonic milliseconds; an nx_timer is embedded in its
 * owner and costs nothing until armed. Everything here runs in one worker process.
 */
#ifndef NX_CORE_LOOP_H
#define NX_CORE_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nx_loop nx_loop;
typedef struct nx_io nx_io;
typedef struct nx_timer nx_timer;

typedef void (*nx_io_fn)(nx_loop *loop, nx_io *io, uint32_t events);
typedef void (*nx_timer_fn)(nx_loop *loop, nx_timer *t);
typedef void (*nx_tick_fn)(nx_loop *loop, void *arg);

struct nx_io {
    int fd;
    nx_io_fn cb;
};

struct nx_timer {
    uint64_t when;     /* expiry, monotonic ms */
    size_t heap_idx;   /* position in the heap + 1; 0 when not armed */
    uint64_t armed_in; /* loop iteration that armed it */
    nx_timer_fn cb;
};

/* A new loop, or NULL with errno set (epoll_create1 failed). */
nx_loop *nx_loop_new(void);
void nx_loop_free(nx_loop *loop);

/* Registers io->fd for events (EPOLLIN, EPOLLOUT, EPOLLET...). NX_OK / NX_ERR (errno). */
int nx_loop_add(nx_loop *loop, nx_io *io, uint32_t events);
int nx_loop_mod(nx_loop *loop, nx_io *io, uint32_t events);
int nx_loop_del(nx_loop *loop, nx_io *io);

/* Arms (or re-arms) t to fire at absolute time when (ms, the loop's clock). */
void nx_timer_set(nx_loop *loop, nx_timer *t, uint64_t when);
void nx_timer_cancel(nx_loop *loop, nx_timer *t);
static inline bool nx_timer_is_armed(const nx_timer *t)
{
    return t->heap_idx != 0;
}

/* The loop's cached clock, refreshed once per iteration (monotonic ms). */
uint64_t nx_loop_now(const nx_loop *loop);

/* Wall-clock seconds cached with the iteration (for Date headers and logs). */
int64_t nx_loop_wall(const nx_loop *loop);

/* fn(loop, arg) runs at the end of every iteration, after all events (e.g. log flush). */
void nx_loop_on_tick(nx_loop *loop, nx_tick_fn fn, void *arg);

/*
 * Publishes the loop's progress in *busy_since (shared memory a supervisor reads): 0 while
 * it waits for events, else when the current batch of callbacks began (monotonic ms). A
 * value long in the past means a callback has not returned.
 */
void nx_loop_watch_busy(nx_loop *loop, uint64_t *busy_since);

/* Runs until nx_loop_stop(); returns NX_OK, or NX_ERR if epoll_wait fails. */
int nx_loop_run(nx_loop *loop);
void nx_loop_stop(nx_loop *loop);

/* Number of armed timers (tests). */
size_t nx_loop_timer_count(const nx_loop *loop);

#endif
