/*
 * wait.c - timer and fd waits for coroutines.
 *
 * The waiter's state lives on the coroutine's own stack: it stays valid exactly as long
 * as the coroutine is parked in the wait, which is as long as the loop can reach it. The
 * coroutine records its current waiter, so that a wait can be ended early from outside:
 * by nx_wake_up (the thing waited for is ready) or nx_wait_interrupt (the client went away).
 * Both re-arm the waiter's timer for now, so the coroutine is always resumed by the loop,
 * never from inside another coroutine.
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
    bool ended;      /* ended early by nx_wake or nx_wait_interrupt */
} waiter;

static void on_timer(nx_loop *loop, nx_timer *t)
{
    waiter *w = nx_container_of(t, waiter, timer);
    nx_coro_resume(w->coro);
}

static void on_io(nx_loop *loop, nx_io *io, uint32_t events)
{
    waiter *w = nx_container_of(io, waiter, io);
    if (w->events || w->ended)
        return; /* already woken in this batch */
    w->events = events;
    nx_timer_cancel(loop, &w->timer);
    nx_coro_resume(w->coro);
}

static void park(waiter *w)
{
    nx_coro_set_wait(w->coro, w);
    nx_coro_yield();
    nx_coro_set_wait(w->coro, NULL);
}

static void end_early(nx_loop *loop, waiter *w)
{
    if (w->ended || w->events)
        return;
    w->ended = true;
    nx_timer_set(loop, &w->timer, nx_loop_now(loop));
}

int nx_wait_until(nx_loop *loop, uint64_t when)
{
    nx_coro *c = nx_coro_current();
    if (!c)
        return NX_ERR;
    waiter w = {.timer = {.cb = on_timer}, .coro = c};
    nx_timer_set(loop, &w.timer, when);
    park(&w);
    nx_timer_cancel(loop, &w.timer);
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
    park(&w);
    nx_timer_cancel(loop, &w.timer);
    nx_loop_del(loop, &w.io);
    return (int)(w.events & (EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLRDHUP));
}

int nx_wait_wakeable(nx_loop *loop, nx_wake *wk, uint64_t deadline)
{
    nx_coro *c = nx_coro_current();
    if (!c)
        return NX_ERR;
    waiter w = {.timer = {.cb = on_timer}, .coro = c};
    wk->loop = loop;
    wk->waiter = &w;
    wk->woken = false;
    if (deadline)
        nx_timer_set(loop, &w.timer, deadline);
    park(&w);
    nx_timer_cancel(loop, &w.timer);
    wk->waiter = NULL;
    return wk->woken ? 1 : 0;
}

void nx_wake_up(nx_wake *wk)
{
    if (!wk->waiter || wk->woken)
        return;
    wk->woken = true;
    end_early(wk->loop, wk->waiter);
}

void nx_wait_interrupt(nx_loop *loop, nx_coro *c)
{
    waiter *w = c ? nx_coro_wait(c) : NULL;
    if (w)
        end_early(loop, w);
}

/* ---- persistent watches ---- */

static void on_watch(nx_loop *loop, nx_io *io, uint32_t events)
{
    nx_watch *wt = nx_container_of(io, nx_watch, io);
    waiter *w = wt->waiter;
    if (w && (events & (wt->want | EPOLLERR | EPOLLHUP))) {
        if (w->events || w->ended)
            return;
        w->events = events;
        nx_timer_cancel(loop, &w->timer);
        nx_coro_resume(w->coro);
        return;
    }
    if (!w && (events & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
        /* Nobody reads it now: level-triggered, it would wake every iteration. */
        nx_loop_del(loop, &wt->io);
        wt->armed = 0;
    }
}

int nx_watch_open(nx_loop *loop, nx_watch *wt, int fd)
{
    wt->io.fd = fd;
    wt->io.cb = on_watch;
    wt->loop = loop;
    wt->waiter = NULL;
    wt->want = 0;
    wt->armed = 0;
    if (nx_loop_add(loop, &wt->io, EPOLLIN) != NX_OK)
        return NX_ERR;
    wt->armed = EPOLLIN;
    return NX_OK;
}

void nx_watch_close(nx_watch *wt)
{
    if (wt->armed && wt->loop)
        nx_loop_del(wt->loop, &wt->io);
    wt->armed = 0;
}

int nx_watch_wait(nx_watch *wt, uint32_t events, uint64_t deadline)
{
    nx_coro *c = nx_coro_current();
    if (!c)
        return NX_ERR;
    uint32_t need = EPOLLIN | (events & EPOLLOUT);
    if (wt->armed != need) {
        int rc =
            wt->armed ? nx_loop_mod(wt->loop, &wt->io, need) : nx_loop_add(wt->loop, &wt->io, need);
        if (rc != NX_OK)
            return NX_ERR;
        wt->armed = need;
    }
    waiter w = {.timer = {.cb = on_timer}, .coro = c};
    wt->waiter = &w;
    wt->want = events;
    if (deadline)
        nx_timer_set(wt->loop, &w.timer, deadline);
    park(&w);
    nx_timer_cancel(wt->loop, &w.timer);
    wt->waiter = NULL;
    if (wt->armed & EPOLLOUT) {
        /* Writable is the normal state of a socket: watch it only while asked. */
        if (nx_loop_mod(wt->loop, &wt->io, EPOLLIN) == NX_OK)
            wt->armed = EPOLLIN;
    }
    return (int)(w.events & (EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLRDHUP));
}
