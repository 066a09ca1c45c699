/*
 * wait.c - timer and fd waits for coroutines.
 *
 * The waiter's state lives on the coroutine's own stack: it stays valid exactly as long
 * as the coroutine is parked in the wait, which is as long as the loop can reach it.
 */
#include "core/wait.h"

#include <sys/epoll.h>

#include <nexus/http.h>

#include "core/coro.h"
#include "core/util.h"

typedef struct waiter {
    nx_timer timer;
    nx_io io;
    nx_coro *coro;
    uint32_t events; /* what woke it; 0 = the timer */
} waiter;

static void on_timer(nx_loop *loop, nx_timer *t)
{
    waiter *w = nx_container_of(t, waiter, timer);
    nx_coro_resume(w->coro);
}

static void on_io(nx_loop *loop, nx_io *io, uint32_t events)
{
    waiter *w = nx_container_of(io, waiter, io);
    if (w->events)
        return; /* already woken in this batch */
    w->events = events;
    nx_coro_resume(w->coro);
}

int nx_wait_until(nx_loop *loop, uint64_t when)
{
    nx_coro *c = nx_coro_current();
    if (!c)
        return NX_ERR;
    waiter w = {.timer = {.cb = on_timer}, .coro = c};
    nx_timer_set(loop, &w.timer, when);
    nx_coro_yield();
    return NX_OK;
}

int nx_wait_fd(nx_loop *loop, int fd, uint32_t events, uint64_t deadline)
{
    nx_coro *c = nx_coro_current();
    if (!c)
        return NX_ERR;
    waiter w = {.timer = {.cb = on_timer}, .io = {.fd = fd, .cb = on_io}, .coro = c};
    if (nx_loop_add(loop, &w.io, events) != NX_OK)
        return NX_ERR;
    if (deadline)
        nx_timer_set(loop, &w.timer, deadline);
    nx_coro_yield();
    nx_timer_cancel(loop, &w.timer);
    nx_loop_del(loop, &w.io);
    return (int)(w.events & (EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLRDHUP));
}
