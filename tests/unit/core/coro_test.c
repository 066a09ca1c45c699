/*
 * coro_test.c - coroutines and the waits built on them: resume/yield hand-offs, the done
 * flag and on_exit, the stack pool, a thousand coroutines parked on one real loop, fd waits
 * on a pipe, and the guard page under the stack.
 *
 * Criterion runs each test in its own process, so the pool and the stack size (globals of
 * coro.c) start fresh in every test.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include <fcntl.h>
#include <fenv.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <nexus/http.h>

#include "core/coro.h"
#include "core/loop.h"
#include "core/util.h"
#include "core/wait.h"

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif

/*
 * A hung loop or a coroutine that is never resumed kills its test with SIGALRM (reported as
 * a crash) instead of blocking the run. (Not Criterion's .timeout: under LeakSanitizer its
 * runner then sometimes leaks and fails the whole program.)
 */
static void watchdog(void)
{
    alarm(5);
}

TestSuite(coro, .init = watchdog);

/* ---- resume / yield ------------------------------------------------------------------- */

typedef struct pingpong {
    long in, out;
    int rounds;
    nx_coro *self;
    bool current_ok;
    char text[64];
} pingpong;

static void pingpong_fn(void *arg)
{
    pingpong *p = arg;
    p->current_ok = nx_coro_current() == p->self;
    /* formatting a double uses aligned SSE stores: a misaligned stack would crash here */
    snprintf(p->text, sizeof(p->text), "%.3f", 1.0 / 3.0);
    double acc = 0.5;
    for (int i = 0; i < p->rounds; i++) {
        acc *= 2.0; /* lives in a register or this stack across the switches */
        p->out = p->in * 2 + (long)acc;
        nx_coro_yield();
        if (nx_coro_current() != p->self)
            p->current_ok = false;
    }
    p->out = -1;
}

Test(coro, resume_yield_ping_pong)
{
    pingpong p = {.rounds = 10};
    nx_coro *c = nx_coro_new(pingpong_fn, &p);
    p.self = c;
    cr_assert_not_null(c);
    cr_expect_eq(nx_coro_live(), 1);
    cr_expect_null(nx_coro_current());
    double acc = 0.5;
    for (int i = 0; i < 10; i++) {
        p.in = i * 100;
        nx_coro_resume(c);
        acc *= 2.0;
        cr_expect_null(nx_coro_current(), "main context after resume returned");
        cr_expect(!nx_coro_is_done(c), "round %d: done too early", i);
        cr_expect_eq(p.out, i * 200 + (long)acc, "round %d: %ld", i, p.out);
    }
    cr_expect(p.current_ok, "nx_coro_current() inside the coroutine was not itself");
    cr_expect_str_eq(p.text, "0.333");
    nx_coro_resume(c);
    cr_expect(nx_coro_is_done(c));
    cr_expect_eq(p.out, -1);
    nx_coro_free(c);
    cr_expect_eq(nx_coro_live(), 0);
}

/* Two coroutines interleaved keep their own stacks and state. */
typedef struct counter {
    int id;
    int steps;
    long sum;
} counter;

static void counter_fn(void *arg)
{
    counter *k = arg;
    long local[32];
    for (int i = 0; i < 32; i++)
        local[i] = k->id * 1000 + i;
    for (int s = 0; s < k->steps; s++) {
        nx_coro_yield();
        for (int i = 0; i < 32; i++)
            k->sum += local[i];
    }
}

Test(coro, interleaved_coroutines_keep_their_stacks)
{
    counter a = {.id = 1, .steps = 5}, b = {.id = 2, .steps = 5};
    nx_coro *ca = nx_coro_new(counter_fn, &a), *cb = nx_coro_new(counter_fn, &b);
    cr_expect_eq(nx_coro_live(), 2);
    while (!nx_coro_is_done(ca) || !nx_coro_is_done(cb)) {
        if (!nx_coro_is_done(ca))
            nx_coro_resume(ca);
        if (!nx_coro_is_done(cb))
            nx_coro_resume(cb);
    }
    long per = 0;
    for (int i = 0; i < 32; i++)
        per += i;
    cr_expect_eq(a.sum, 5 * (32 * 1000 + per));
    cr_expect_eq(b.sum, 5 * (32 * 2000 + per));
    nx_coro_free(ca);
    nx_coro_free(cb);
    cr_expect_eq(nx_coro_live(), 0);
}

/* The rounding mode is part of each context: a coroutine's change does not leak to main. */
static void rounding_fn(void *arg)
{
    int *seen = arg;
    fesetround(FE_DOWNWARD);
    nx_coro_yield();
    *seen = fegetround();
}

Test(coro, fp_control_is_per_context)
{
    int seen = -1;
    cr_assert_eq(fegetround(), FE_TONEAREST);
    nx_coro *c = nx_coro_new(rounding_fn, &seen);
    nx_coro_resume(c);
    cr_expect_eq(fegetround(), FE_TONEAREST, "the coroutine's rounding mode leaked to main");
    nx_coro_resume(c);
    cr_expect_eq(seen, FE_DOWNWARD, "the coroutine lost its rounding mode across a yield");
    cr_expect_eq(fegetround(), FE_TONEAREST);
    nx_coro_free(c);
}

/* ---- done and on_exit ----------------------------------------------------------------- */

typedef struct exit_probe {
    nx_coro *c;
    int body_runs;
    int exit_runs;
    bool exit_in_main;
    bool done_at_exit;
    bool body_finished_first;
    bool free_in_exit;
} exit_probe;

static void exit_body(void *arg)
{
    exit_probe *e = arg;
    e->body_runs++;
    nx_coro_yield();
    e->body_runs++;
}

static void on_exit_cb(void *arg)
{
    exit_probe *e = arg;
    e->exit_runs++;
    e->exit_in_main = nx_coro_current() == NULL;
    e->done_at_exit = nx_coro_is_done(e->c);
    e->body_finished_first = e->body_runs == 2;
    if (e->free_in_exit)
        nx_coro_free(e->c);
}

Test(coro, on_exit_runs_in_main_after_the_end)
{
    exit_probe e = {.body_runs = 0};
    e.c = nx_coro_new(exit_body, &e);
    nx_coro_on_exit(e.c, on_exit_cb, &e);
    nx_coro_resume(e.c);
    cr_expect_eq(e.exit_runs, 0, "on_exit ran at a yield");
    cr_expect(!nx_coro_is_done(e.c));
    nx_coro_resume(e.c);
    cr_expect_eq(e.exit_runs, 1);
    cr_expect(e.exit_in_main, "on_exit ran inside the coroutine");
    cr_expect(e.done_at_exit);
    cr_expect(e.body_finished_first);
    cr_expect(nx_coro_is_done(e.c));
    nx_coro_free(e.c);
    cr_expect_eq(nx_coro_live(), 0);
}

Test(coro, on_exit_may_free)
{
    nx_coro_pool_drain();
    exit_probe e = {.free_in_exit = true};
    e.c = nx_coro_new(exit_body, &e);
    nx_coro_on_exit(e.c, on_exit_cb, &e);
    nx_coro_resume(e.c);
    nx_coro_resume(e.c);
    cr_expect_eq(e.exit_runs, 1);
    cr_expect_eq(nx_coro_live(), 0);
    cr_expect_eq(nx_coro_pool_size(), 1);
    /* a recycled coroutine starts without the previous on_exit */
    exit_probe f = {.free_in_exit = false};
    f.c = nx_coro_new(exit_body, &f);
    nx_coro_resume(f.c);
    nx_coro_resume(f.c);
    cr_expect_eq(e.exit_runs, 1, "the old on_exit ran for the recycled coroutine");
    cr_expect_eq(f.exit_runs, 0);
    nx_coro_free(f.c);
}

static void empty_fn(void *arg)
{
    (*(int *)arg)++;
}

/* ---- the pool ------------------------------------------------------------------------- */

Test(coro, pool_reuse)
{
    nx_coro_pool_drain();
    cr_expect_eq(nx_coro_pool_size(), 0);
    int runs = 0;
    nx_coro *c1 = nx_coro_new(empty_fn, &runs);
    nx_coro_resume(c1);
    cr_expect(nx_coro_is_done(c1));
    nx_coro_free(c1);
    cr_expect_eq(nx_coro_pool_size(), 1);
    cr_expect_eq(nx_coro_live(), 0);

    nx_coro *c2 = nx_coro_new(empty_fn, &runs);
    cr_expect_eq(c2, c1, "the pooled stack was not reused");
    cr_expect_eq(nx_coro_pool_size(), 0);
    cr_expect(!nx_coro_is_done(c2), "a recycled coroutine starts not done");
    nx_coro_resume(c2);
    cr_expect_eq(runs, 2);

    /* a coroutine that never ran may be freed too; NULL is a no-op */
    nx_coro *c3 = nx_coro_new(empty_fn, &runs);
    cr_expect_eq(nx_coro_live(), 2);
    nx_coro_free(c3);
    nx_coro_free(c2);
    nx_coro_free(NULL);
    cr_expect_eq(runs, 2);
    cr_expect_eq(nx_coro_pool_size(), 2);
    cr_expect_eq(nx_coro_live(), 0);
    nx_coro_pool_drain();
    cr_expect_eq(nx_coro_pool_size(), 0);

    /* the pool is bounded: past its limit, freed stacks are unmapped */
    enum { MANY = 1100 };
    static nx_coro *many[MANY];
    for (int i = 0; i < MANY; i++)
        many[i] = nx_coro_new(empty_fn, &runs);
    cr_expect_eq(nx_coro_live(), MANY);
    for (int i = 0; i < MANY; i++)
        nx_coro_free(many[i]);
    cr_expect_lt(nx_coro_pool_size(), MANY);
    cr_expect_geq(nx_coro_pool_size(), 64);
    nx_coro_pool_drain();
}

/* ---- many coroutines parked on a real loop -------------------------------------------- */

#define NCORO 1000

typedef struct sleeper {
    nx_loop *loop;
    nx_coro *c;
    uint64_t deadline;
    int rc;
    bool early;
} sleeper;

typedef struct sleep_fixture {
    sleeper s[NCORO];
    uint64_t woke[NCORO];
    size_t nwoke;
    size_t max_live;
    size_t exits;
} sleep_fixture;

static sleep_fixture W;

static void sleeper_fn(void *arg)
{
    sleeper *s = arg;
    s->rc = nx_wait_until(s->loop, s->deadline);
    if (nx_loop_now(s->loop) < s->deadline)
        s->early = true;
    W.woke[W.nwoke++] = s->deadline;
}

static void sleeper_exit(void *arg)
{
    sleeper *s = arg;
    nx_coro_free(s->c);
    if (++W.exits == NCORO)
        nx_loop_stop(s->loop);
}

static void guard_stop(nx_loop *loop, nx_timer *t)
{
    nx_loop_stop(loop);
}

Test(coro, thousand_coroutines_wake_in_deadline_order)
{
    memset(&W, 0, sizeof(W));
    nx_coro_pool_drain();
    nx_loop *loop = nx_loop_new();
    uint64_t base = nx_loop_now(loop);
    for (size_t i = 0; i < NCORO; i++) {
        sleeper *s = &W.s[i];
        s->loop = loop;
        /* deadlines 0..39 ms ahead in scrambled order, many shared */
        s->deadline = base + (i * 7919u) % 40u;
        s->c = nx_coro_new(sleeper_fn, s);
        nx_coro_on_exit(s->c, sleeper_exit, s);
        nx_coro_resume(s->c); /* runs until it parks */
        cr_assert(!nx_coro_is_done(s->c));
    }
    W.max_live = nx_coro_live();
    cr_expect_eq(W.max_live, NCORO);
    cr_expect_eq(nx_loop_timer_count(loop), NCORO);
    nx_timer guard = {.cb = guard_stop};
    nx_timer_set(loop, &guard, base + 3000);
    cr_assert_eq(nx_loop_run(loop), NX_OK);
    nx_timer_cancel(loop, &guard);
    cr_assert_eq(W.nwoke, NCORO, "only %zu of %d woke", W.nwoke, NCORO);
    for (size_t i = 1; i < NCORO; i++)
        cr_expect_geq(W.woke[i], W.woke[i - 1], "wake %zu: deadline %llu after %llu", i,
                      (unsigned long long)W.woke[i], (unsigned long long)W.woke[i - 1]);
    for (size_t i = 0; i < NCORO; i++) {
        cr_expect_eq(W.s[i].rc, NX_OK);
        cr_expect(!W.s[i].early, "coroutine %zu woke before its deadline", i);
    }
    cr_expect_eq(nx_coro_live(), 0);
    cr_expect_eq(nx_coro_pool_size(), NCORO);
    cr_expect_eq(nx_loop_timer_count(loop), 0);
    nx_loop_free(loop);
    nx_coro_pool_drain();
}

/* A coroutine may wait several times in a row; each wait is a separate park. */
typedef struct multi {
    nx_loop *loop;
    int waits;
    uint64_t last;
    bool monotonic;
} multi;

static void multi_fn(void *arg)
{
    multi *m = arg;
    m->monotonic = true;
    for (int i = 0; i < 5; i++) {
        uint64_t when = nx_loop_now(m->loop) + 2;
        nx_wait_until(m->loop, when);
        if (nx_loop_now(m->loop) < when || nx_loop_now(m->loop) < m->last)
            m->monotonic = false;
        m->last = nx_loop_now(m->loop);
        m->waits++;
    }
}

static void stop_loop_exit(void *arg)
{
    nx_loop_stop(arg);
}

Test(coro, sequential_waits)
{
    nx_loop *loop = nx_loop_new();
    multi m = {.loop = loop};
    nx_coro *c = nx_coro_new(multi_fn, &m);
    nx_coro_on_exit(c, stop_loop_exit, loop);
    uint64_t start = nx_loop_now(loop);
    nx_coro_resume(c);
    cr_assert_eq(nx_loop_run(loop), NX_OK);
    cr_expect_eq(m.waits, 5);
    cr_expect(m.monotonic);
    cr_expect_geq(m.last, start + 10);
    cr_expect(nx_coro_is_done(c));
    nx_coro_free(c);
    nx_loop_free(loop);
}

Test(coro, waits_outside_a_coroutine_fail)
{
    nx_loop *loop = nx_loop_new();
    int p[2];
    cr_assert_eq(pipe(p), 0);
    cr_expect_eq(nx_wait_until(loop, nx_loop_now(loop) + 1), NX_ERR);
    cr_expect_eq(nx_wait_fd(loop, p[0], EPOLLIN, 0), NX_ERR);
    cr_expect_eq(nx_loop_timer_count(loop), 0);
    close(p[0]);
    close(p[1]);
    nx_loop_free(loop);
}

/* ---- nx_wait_fd ----------------------------------------------------------------------- */

typedef struct fd_waiter {
    nx_loop *loop;
    int rfd, wfd;
    int r_data, r_timeout, r_nodeadline, r_badfd, r_file;
    char got[16];
    uint64_t timeout_at, woke_at;
    nx_timer writer;
} fd_waiter;

static fd_waiter P;

static void pipe_writer(nx_loop *loop, nx_timer *t)
{
    cr_assert_eq(write(P.wfd, "x", 1), 1);
}

static void fd_fn(void *arg)
{
    fd_waiter *f = arg;
    /* 1: data arrives 5 ms later, well before the deadline */
    nx_timer_set(f->loop, &f->writer, nx_loop_now(f->loop) + 5);
    f->r_data = nx_wait_fd(f->loop, f->rfd, EPOLLIN, nx_loop_now(f->loop) + 2000);
    ssize_t n = read(f->rfd, f->got, sizeof(f->got) - 1);
    if (n > 0)
        f->got[n] = '\0';
    /* 2: nothing arrives: 0 at the deadline; the fd is registered afresh (it was removed) */
    f->timeout_at = nx_loop_now(f->loop) + 10;
    f->r_timeout = nx_wait_fd(f->loop, f->rfd, EPOLLIN, f->timeout_at);
    f->woke_at = nx_loop_now(f->loop);
    /* 3: no deadline at all, data already there */
    cr_assert_eq(write(f->wfd, "yz", 2), 2);
    f->r_nodeadline = nx_wait_fd(f->loop, f->rfd, EPOLLIN, 0);
    /* 4: epoll refuses the fd */
    f->r_badfd = nx_wait_fd(f->loop, -1, EPOLLIN, nx_loop_now(f->loop) + 10);
    int file = open("/dev/null", O_RDONLY | O_CLOEXEC);
    f->r_file = nx_wait_fd(f->loop, file, EPOLLIN, nx_loop_now(f->loop) + 10);
    close(file);
}

Test(coro, wait_fd_on_a_pipe)
{
    memset(&P, 0, sizeof(P));
    int p[2];
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    P.rfd = p[0];
    P.wfd = p[1];
    P.writer.cb = pipe_writer;
    nx_loop *loop = nx_loop_new();
    P.loop = loop;
    nx_coro *c = nx_coro_new(fd_fn, &P);
    nx_coro_on_exit(c, stop_loop_exit, loop);
    nx_coro_resume(c);
    nx_timer guard = {.cb = guard_stop};
    nx_timer_set(loop, &guard, nx_loop_now(loop) + 3000);
    cr_assert_eq(nx_loop_run(loop), NX_OK);
    cr_assert(nx_coro_is_done(c), "the coroutine is still parked");
    nx_timer_cancel(loop, &guard);
    cr_expect(P.r_data > 0 && (P.r_data & EPOLLIN), "data: %d", P.r_data);
    cr_expect_str_eq(P.got, "x");
    cr_expect_eq(P.r_timeout, 0, "timeout: %d", P.r_timeout);
    cr_expect_geq(P.woke_at, P.timeout_at, "woke before the deadline");
    cr_expect(P.r_nodeadline > 0 && (P.r_nodeadline & EPOLLIN), "no deadline: %d", P.r_nodeadline);
    cr_expect_eq(P.r_badfd, NX_ERR);
    cr_expect_eq(P.r_file, NX_ERR);
    cr_expect_eq(nx_loop_timer_count(loop), 0, "a wait left its timer armed");
    nx_coro_free(c);
    close(p[0]);
    close(p[1]);
    nx_loop_free(loop);
}

/* A writer's hang-up wakes a reader too. */
static void hup_fn(void *arg)
{
    fd_waiter *f = arg;
    f->r_data = nx_wait_fd(f->loop, f->rfd, EPOLLIN, nx_loop_now(f->loop) + 2000);
}

static void close_writer(nx_loop *loop, nx_timer *t)
{
    close(P.wfd);
    P.wfd = -1;
}

Test(coro, wait_fd_wakes_on_hangup)
{
    memset(&P, 0, sizeof(P));
    int p[2];
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    P.rfd = p[0];
    P.wfd = p[1];
    nx_loop *loop = nx_loop_new();
    P.loop = loop;
    P.writer.cb = close_writer;
    nx_timer_set(loop, &P.writer, nx_loop_now(loop) + 5);
    nx_coro *c = nx_coro_new(hup_fn, &P);
    nx_coro_on_exit(c, stop_loop_exit, loop);
    nx_coro_resume(c);
    cr_assert_eq(nx_loop_run(loop), NX_OK);
    cr_expect(P.r_data & EPOLLHUP, "events %d", P.r_data);
    nx_coro_free(c);
    close(p[0]);
    nx_loop_free(loop);
}

/* ---- stacks --------------------------------------------------------------------------- */

static volatile int keep_going = 1;

static size_t recurse(size_t depth)
{
    volatile char frame[512];
    frame[0] = (char)depth;
    if (!keep_going)
        return depth;
    return recurse(depth + 1) + (size_t)frame[0];
}

static void overflow_fn(void *arg)
{
    *(size_t *)arg = recurse(0);
}

/*
 * Unbounded recursion hits the guard page under the stack and dies with SIGSEGV instead of
 * running into other memory. (Under AddressSanitizer its handler reports the overflow and
 * exits with status 1 instead.)
 */
#ifdef TEST_ASAN
Test(coro, stack_overflow_hits_guard_page, .exit_code = 1, .init = cr_redirect_stderr)
#else
Test(coro, stack_overflow_hits_guard_page, .signal = SIGSEGV)
#endif
{
    size_t out = 0;
    nx_coro *c = nx_coro_new(overflow_fn, &out);
    nx_coro_resume(c);
    cr_assert_fail("the coroutine returned from unbounded recursion");
}

/*
 * The fault is in the guard page of the overflowing coroutine's own mapping, not somewhere
 * further down after running through a neighbour's stack (mappings made one after another
 * usually sit next to each other). The layout is coro.c's: the struct at the top of the
 * mapping, the usable stack below it, one guard page at the bottom.
 */
static sigjmp_buf fault_env;
static volatile uintptr_t fault_addr;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    fault_addr = (uintptr_t)si->si_addr;
    siglongjmp(fault_env, 1);
}

Test(coro, overflow_faults_in_the_guard_page)
{
    const size_t stack = 64 * 1024;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    nx_coro_set_stack_size(stack);
    size_t out = 0;
    int runs = 0;
    nx_coro *c = nx_coro_new(overflow_fn, &out);
    nx_coro *neighbour = nx_coro_new(empty_fn, &runs);
    static char alt[64 * 1024];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof(alt)};
    cr_assert_eq(sigaltstack(&ss, NULL), 0);
    struct sigaction sa = {.sa_sigaction = on_segv, .sa_flags = SA_SIGINFO | SA_ONSTACK};
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGSEGV, &sa, NULL), 0);
    if (sigsetjmp(fault_env, 1) == 0) {
        nx_coro_resume(c);
        cr_assert_fail("the coroutine returned from unbounded recursion");
    }
    signal(SIGSEGV, SIG_DFL);
    uintptr_t top = (uintptr_t)c;
    /* the guard page is [top - stack - page, top - stack) give or take the struct's size */
    cr_expect(fault_addr >= top - stack - page && fault_addr < top - stack + 1024,
              "fault at %#lx, %lu bytes below the coroutine; the guard page is about %lu "
              "to %lu below",
              (unsigned long)fault_addr, (unsigned long)(top - fault_addr), (unsigned long)(stack),
              (unsigned long)(stack + page));
    (void)neighbour; /* abandoned with c: this test's process ends here */
}

/* Bounded recursion using most of the stack is fine. */
static size_t bounded(size_t depth, size_t limit)
{
    volatile char frame[1024];
    frame[0] = (char)depth;
    frame[sizeof(frame) - 1] = (char)depth;
    if (depth >= limit)
        return depth;
    return bounded(depth + 1, limit) + (size_t)(frame[0] - frame[sizeof(frame) - 1]);
}

typedef struct deep {
    size_t limit, out;
} deep;

static void deep_fn(void *arg)
{
    deep *d = arg;
    d->out = bounded(0, d->limit);
}

Test(coro, set_stack_size_allows_deep_stacks)
{
    nx_coro_set_stack_size(2 * 1024 * 1024);
    /* about 1.2 MB of frames (more under ASan's redzones, still below 2 MB) */
    deep d = {.limit = 1000};
    nx_coro *c = nx_coro_new(deep_fn, &d);
    nx_coro_resume(c);
    cr_expect(nx_coro_is_done(c));
    cr_expect_eq(d.out, 1000);
    nx_coro_free(c);
}

/*
 * "Sets the stack size of coroutines made from now on": a stack pooled before the change
 * must not be handed to a coroutine made after it.
 */
Test(coro, set_stack_size_applies_to_pooled_stacks)
{
    int runs = 0;
    nx_coro_set_stack_size(64 * 1024);
    nx_coro *small = nx_coro_new(empty_fn, &runs);
    nx_coro_resume(small);
    nx_coro_free(small); /* a 64 KB stack now sits in the pool */
    nx_coro_set_stack_size(2 * 1024 * 1024);
    deep d = {.limit = 1000}; /* about 1.2 MB */
    nx_coro *c = nx_coro_new(deep_fn, &d);
    nx_coro_resume(c);
    cr_expect(nx_coro_is_done(c));
    cr_expect_eq(d.out, 1000);
    nx_coro_free(c);
}
