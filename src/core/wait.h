/*
 * core/wait.h - parking the running coroutine until a time or a file descriptor event.
 *
 * These are the primitives every blocking-looking call is built on (sleep, later the
 * database and Redis clients): the coroutine yields to the loop, and a timer or an epoll
 * event resumes it. Each wait is bounded by a deadline, so no request can park forever.
 */
#ifndef NX_CORE_WAIT_H
#define NX_CORE_WAIT_H

#include <stdint.h>

#include "core/loop.h"

/* Parks until monotonic time when (ms). NX_OK, or NX_ERR outside a coroutine. */
int nx_wait_until(nx_loop *loop, uint64_t when);

/*
 * Parks until fd has one of events (EPOLLIN, EPOLLOUT) or deadline (0 = none) passes.
 * fd must not be registered with the loop already. Returns the ready events (> 0),
 * 0 on timeout, or NX_ERR (outside a coroutine, or epoll refused the fd).
 */
int nx_wait_fd(nx_loop *loop, int fd, uint32_t events, uint64_t deadline);

#endif
