/*
 * coro_ucontext.c - the portable context switch (architectures without coro_*.S).
 * swapcontext saves the signal mask with a system call, so it is slower than the
 * assembly version, but it is correct everywhere glibc runs.
 */
#include <stdint.h>
#include <ucontext.h>

#include "core/coro_ctx.h"

static void trampoline(unsigned hi, unsigned lo, unsigned ehi, unsigned elo)
{
    void *arg = (void *)(((uint64_t)hi << 32) | (uint64_t)lo);
    void (*entry)(void *) = (void (*)(void *))(((uint64_t)ehi << 32) | (uint64_t)elo);
    entry(arg);
}

void nx_ctx_make(struct nx_ctx *ctx, void *base, size_t size, void (*entry)(void *), void *arg)
{
    getcontext(&ctx->uc);
    ctx->uc.uc_stack.ss_sp = base;
    ctx->uc.uc_stack.ss_size = size;
    ctx->uc.uc_link = NULL;
    uint64_t a = (uintptr_t)arg, e = (uintptr_t)entry;
    makecontext(&ctx->uc, (void (*)(void))trampoline, 4, (unsigned)(a >> 32), (unsigned)a,
                (unsigned)(e >> 32), (unsigned)e);
}

void nx_ctx_switch(struct nx_ctx *from, struct nx_ctx *to)
{
    swapcontext(&from->uc, &to->uc);
}
