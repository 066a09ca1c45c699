/*
 * core/wait.h - parking the running coroutine until a time or a file descriptor event.
 *
 * These are the primitives every blocking-looking call is built on (sleep, later the
 * database and Redis clients): the coroutine yields to the loop, and a timer or an epoll
 * event resumes it. Each wait is bounded by a deadline, so no request can park forever.
 */
#ifndef NX_CORE_WAIT_H
#define NX_CORE_WAIT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/coro.h"
#include "core/loop.h"

/* Parks until monotonic time when (ms). NX_OK, or NX_ERR outside a coroutine. */
int nx_wait_until(nx_loop *loop, uint64_t when);

/*
 * Parks until fd has one of events (EPOLLIN, EPOLLOUT) or deadline (0 = none) passes.
 * fd must not be registered with the loop already. Returns the ready events (> 0),
 * 0 on timeout, or NX_ERR (outside a coroutine, or epoll refused the fd).
 */
int nx_wait_fd(nx_loop *loop, int fd, uint32_t events, uint64_t deadline);

/*
 * A wait that another party ends: the waiting coroutine calls nx_wait_wakeable, and
 * whoever has what it waits for calls nx_wake_up (from any context). Returns 1 when woken,
 * 0 on deadline (0 = none) or interrupt, NX_ERR outside a coroutine. The nx_wake lives
 * with whoever queues the waiter; it is only valid while the wait lasts.
 */
typedef struct nx_wake {
    nx_loop *loop;
    void *waiter; /* set while parked */
    bool woken;
} nx_wake;

int nx_wait_wakeable(nx_loop *loop, nx_wake *wk, uint64_t deadline);
void nx_wake_up(nx_wake *wk);

/*
 * A file descriptor that stays registered, level-triggered for input, between waits: for
 * a client connection to a database, which parks on the same socket for every statement,
 * this saves registering and removing it each time. Input that arrives while nobody waits
 * (a server's notice on an idle connection) unregisters it until the next wait, so it
 * cannot spin the loop. Output readiness is watched only during a wait that asks for it.
 */
typedef struct nx_watch {
    nx_io io;
    nx_loop *loop;
    uint32_t armed; /* events registered; 0 when not registered */
    void *waiter;   /* the coroutine's waiter while one is parked */
    uint32_t want;
} nx_watch;

/* Starts watching fd for input. NX_OK, or NX_ERR (errno) when epoll refuses it. */
int nx_watch_open(nx_loop *loop, nx_watch *wt, int fd);
/* Stops watching (before the fd is closed). */
void nx_watch_close(nx_watch *wt);
/*
 * Parks until the fd has one of events (EPOLLIN, EPOLLOUT), deadline (0 = none) passes, or
 * the wait is interrupted. Returns the events (> 0), 0, or NX_ERR (outside a coroutine,
 * or epoll refused the fd).
 */
int nx_watch_wait(nx_watch *wt, uint32_t events, uint64_t deadline);

/*
 * Ends the wait coroutine c is parked in (if any) at the next loop iteration, as if its
 * deadline had passed: used when the client of a parked request goes away. The code that
 * waited checks why it woke.
 */
void nx_wait_interrupt(nx_loop *loop, nx_coro *c);

#endif
