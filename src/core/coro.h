/*
 * core/coro.h - stackful coroutines on pooled stacks.
 *
 * A request runs in a coroutine so that handler code can wait (on a socket, a timer, a
 * database) in straight-line code: the wait parks the coroutine and returns to the event
 * loop, which resumes it when the wait is over. Stacks are mmap'd with a PROT_NONE guard
 * page below them, so an overflow kills the worker with SIGSEGV instead of corrupting
 * memory, and they are pooled per worker: a request that never parks costs two context
 * switches and no system call.
 *
 * Coroutines are not nested: only the loop (the "main" context) resumes a coroutine, and
 * a coroutine only yields back to it.
 */
#ifndef NX_CORE_CORO_H
#define NX_CORE_CORO_H

#include <stdbool.h>
#include <stddef.h>

typedef struct nx_coro nx_coro;
typedef void (*nx_coro_fn)(void *arg);

/* Sets the stack size of coroutines made from now on (rounded up to pages). */
void nx_coro_set_stack_size(size_t size);

/* A coroutine that will run fn(arg) when first resumed. Stack from the pool. */
nx_coro *nx_coro_new(nx_coro_fn fn, void *arg);

/*
 * Calls fn(arg) in the main context right after c's function returns (from whichever
 * nx_coro_resume ran it to its end). fn may free c.
 */
void nx_coro_on_exit(nx_coro *c, nx_coro_fn fn, void *arg);

/* Runs c until it yields or returns. Only from the main context. */
void nx_coro_resume(nx_coro *c);

/* Parks the running coroutine and returns to whoever resumed it. Only inside one. */
void nx_coro_yield(void);

/* True once fn has returned; the coroutine may then be freed. */
bool nx_coro_is_done(const nx_coro *c);

/* Returns c's stack to the pool. c must be done or never started. */
void nx_coro_free(nx_coro *c);

/* The wait c is parked in (core/wait.c keeps it, to end it early), or NULL. */
void nx_coro_set_wait(nx_coro *c, void *wait);
void *nx_coro_wait(const nx_coro *c);

/* The running coroutine, or NULL in the main context. */
nx_coro *nx_coro_current(void);

/* Frees the pooled stacks (worker exit, tests). */
void nx_coro_pool_drain(void);

/* Stacks currently pooled, and coroutines alive (tests). */
size_t nx_coro_pool_size(void);
size_t nx_coro_live(void);

/* Context switch, in assembly (coro_x86_64.S) or on ucontext (coro_ucontext.c). */
typedef struct nx_ctx nx_ctx;

#endif
