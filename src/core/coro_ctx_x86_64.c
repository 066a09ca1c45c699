/*
 * coro_ctx_x86_64.c - laying out a fresh stack for coro_x86_64.S.
 */
#if defined(__x86_64__)
#include <stdint.h>
#include <string.h>

#include "core/coro_ctx.h"

void nx_ctx_trampoline(void);

void nx_ctx_make(struct nx_ctx *ctx, void *base, size_t size, void (*entry)(void *), void *arg)
{
    /* What nx_ctx_switch pops, from the new stack pointer upwards: the control words,
     * r15, r14, r13 (= arg), r12 (= entry), rbx, rbp, and the return address. */
    uintptr_t top = ((uintptr_t)base + size) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)top - 8;
    uint32_t words[2] = {0x1F80, 0x037F}; /* MXCSR and x87 control word defaults */
    memcpy(&sp[0], words, sizeof(words));
    sp[1] = 0;                          /* r15 */
    sp[2] = 0;                          /* r14 */
    sp[3] = (uint64_t)(uintptr_t)arg;   /* r13 */
    sp[4] = (uint64_t)(uintptr_t)entry; /* r12 */
    sp[5] = 0;                          /* rbx */
    sp[6] = 0;                          /* rbp */
    sp[7] = (uint64_t)(uintptr_t)nx_ctx_trampoline;
    ctx->sp = sp;
}
#else
typedef int nx_coro_ctx_x86_64_unused;
#endif
