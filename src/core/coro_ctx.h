/*
 * core/coro_ctx.h - the machine-level context switch under coro.c.
 *
 * Two implementations: coro_x86_64.S (a few instructions, no system call) and
 * coro_ucontext.c (portable, for other architectures). The build picks one.
 */
#ifndef NX_CORE_CORO_CTX_H
#define NX_CORE_CORO_CTX_H

#include <stddef.h>

#if defined(__x86_64__)
struct nx_ctx {
    void *sp;
};
#else
#include <ucontext.h>
struct nx_ctx {
    ucontext_t uc;
};
#endif

/* Prepares ctx so that switching to it calls entry(arg) on the stack [base, base+size). */
void nx_ctx_make(struct nx_ctx *ctx, void *base, size_t size, void (*entry)(void *), void *arg);

/* Saves the current context in from and continues in to. */
void nx_ctx_switch(struct nx_ctx *from, struct nx_ctx *to);

#endif
