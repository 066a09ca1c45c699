/*
 * coro_x86_64.S - context switch for the System V x86-64 ABI.
 *
 * Only callee-saved state is switched (rbx, rbp, r12-r15, the stack pointer, and the
 * MXCSR/x87 control words, which the ABI also makes callee-saved): the caller of
 * nx_ctx_switch already saved everything else, as for any function call.
 *
 *   void nx_ctx_switch(struct nx_ctx *from, struct nx_ctx *to)   rdi = from, rsi = to
 */
    .text
    .globl nx_ctx_switch
    .type nx_ctx_switch, @function
nx_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq (%rsi), %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size nx_ctx_switch, .-nx_ctx_switch

/*
 * First code run on a new stack: nx_ctx_make left entry in r12 and its argument in r13.
 * entry never returns (coro.c switches away for the last time at its end).
 */
    .globl nx_ctx_trampoline
    .type nx_ctx_trampoline, @function
nx_ctx_trampoline:
    movq %r13, %rdi
    andq $-16, %rsp
    callq *%r12
    ud2
    .size nx_ctx_trampoline, .-nx_ctx_trampoline

    .section .note.GNU-stack,"",@progbits
