/*
 * loop_test.c - the epoll loop: the timer heap under random set / re-set / cancel, timers
 * firing in deadline order on real time, io callbacks on a socketpair, tick hooks, stop.
 *
 * Heap tests use deadlines in the past, so every armed timer fires in the first iteration
 * and the order they fire in is exactly the order the heap hands them out. Real-time tests
 * use deadlines 5-30 ms ahead; a guard timer stops a loop that would otherwise hang.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nexus/http.h>

#include "core/loop.h"
#include "core/util.h"

/*
 * A hung loop or a coroutine that is never resumed kills its test with SIGALRM (reported as
 * a crash) instead of blocking the run. (Not Criterion's .timeout: under LeakSanitizer its
 * runner then sometimes leaks and fails the whole program.)
 */
static void watchdog(void)
{
    alarm(5);
}

TestSuite(loop, .init = watchdog);

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
    /* xorshift64*: reproducible without touching rand()'s global state */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

/* ---- the timer heap ------------------------------------------------------------------- */

#define NT 3000

typedef struct heap_fixture {
    nx_timer t[NT];
    bool armed[NT];
    uint64_t when[NT];
    int fired[NT];
    uint64_t last_when;
    size_t nfired;
    bool out_of_order;
    bool fired_armed;
} heap_fixture;

static heap_fixture H;

static void heap_cb(nx_loop *loop, nx_timer *t)
{
    size_t i = (size_t)(t - H.t);
    if (i >= NT)
        return;
    H.fired[i]++;
    if (t->when < H.last_when)
        H.out_of_order = true;
    if (nx_timer_is_armed(t))
        H.fired_armed = true;
    H.last_when = t->when;
    H.nfired++;
}

static void stop_tick(nx_loop *loop, void *arg)
{
    nx_loop_stop(loop);
}

/* Random operations against a model; then every armed timer must fire once, in order. */
Test(loop, timer_heap_random_operations)
{
    nx_loop *loop = nx_loop_new();
    cr_assert_not_null(loop);
    memset(&H, 0, sizeof(H));
    uint64_t now = nx_loop_now(loop);
    cr_assert_gt(now, 0);
    for (size_t i = 0; i < NT; i++)
        H.t[i].cb = heap_cb;
    size_t armed = 0;
    for (int op = 0; op < 40000; op++) {
        size_t i = (size_t)(rnd() % NT);
        uint64_t r = rnd() % 8;
        if (r < 5) {
            /* set or re-set, earlier or later; many equal deadlines too */
            uint64_t when = rnd() % 4 == 0 ? now / 2 : (now / 2) + rnd() % (now / 2 + 1);
            if (!H.armed[i])
                armed++;
            nx_timer_set(loop, &H.t[i], when);
            H.armed[i] = true;
            H.when[i] = when;
        } else {
            nx_timer_cancel(loop, &H.t[i]); /* armed or not: both are fine */
            if (H.armed[i])
                armed--;
            H.armed[i] = false;
        }
        if (op % 997 == 0) {
            cr_assert_eq(nx_loop_timer_count(loop), armed, "op %d", op);
            for (size_t k = 0; k < NT; k++)
                cr_assert_eq(nx_timer_is_armed(&H.t[k]), H.armed[k], "op %d timer %zu", op, k);
        }
    }
    cr_assert_eq(nx_loop_timer_count(loop), armed);
    cr_assert_gt(armed, NT / 3);
    for (size_t k = 0; k < NT; k++) {
        cr_assert_eq(nx_timer_is_armed(&H.t[k]), H.armed[k], "timer %zu", k);
        if (H.armed[k])
            cr_assert_eq(H.t[k].when, H.when[k], "timer %zu", k);
    }
    nx_loop_on_tick(loop, stop_tick, NULL);
    cr_assert_eq(nx_loop_run(loop), NX_OK);
    cr_expect_eq(H.nfired, armed);
    cr_expect(!H.out_of_order, "timers fired out of deadline order");
    cr_expect(!H.fired_armed, "a timer was still armed in its own callback");
    for (size_t k = 0; k < NT; k++)
        cr_expect_eq(H.fired[k], H.armed[k] ? 1 : 0, "timer %zu fired %d times", k, H.fired[k]);
    cr_expect_eq(nx_loop_timer_count(loop), 0);
    nx_loop_free(loop);
}

/* Cancel from the middle of a heap filled in ascending, descending and equal order. */
Test(loop, timer_heap_cancel_middle)
{
    nx_loop *loop = nx_loop_new();
    memset(&H, 0, sizeof(H));
    uint64_t now = nx_loop_now(loop);
    for (size_t i = 0; i < 300; i++) {
        H.t[i].cb = heap_cb;
        uint64_t when = i < 100 ? now - 1000 + i : i < 200 ? now - (i - 100) : now - 500;
        nx_timer_set(loop, &H.t[i], when);
    }
    /* cancel every third, starting mid-way through each run; cancel twice is a no-op */
    size_t left = 300;
    for (size_t i = 50; i < 300; i += 3) {
        nx_timer_cancel(loop, &H.t[i]);
        nx_timer_cancel(loop, &H.t[i]);
        cr_assert(!nx_timer_is_armed(&H.t[i]));
        left--;
    }
    cr_assert_eq(nx_loop_timer_count(loop), left);
    /* re-arming an armed timer does not duplicate it */
    nx_timer_set(loop, &H.t[1], now - 2000);
    nx_timer_set(loop, &H.t[1], now - 2000);
    nx_timer_set(loop, &H.t[2], now + 3600000);
    nx_timer_set(loop, &H.t[2], now - 3);
    cr_assert_eq(nx_loop_timer_count(loop), left);
    nx_loop_on_tick(loop, stop_tick, NULL);
    nx_loop_run(loop);
    cr_expect_eq(H.nfired, left);
    cr_expect(!H.out_of_order);
    for (size_t i = 0; i < 300; i++) {
        bool cancelled = i >= 50 && (i - 50) % 3 == 0;
        cr_expect_eq(H.fired[i], cancelled ? 0 : 1, "timer %zu", i);
    }
    nx_loop_free(loop);
}

/* ---- timers on real time -------------------------------------------------------------- */

typedef struct order_fixture {
    nx_timer t[5];
    int order[5];
    int n;
    bool early;
    uint64_t start;
} order_fixture;

static order_fixture O;

static void order_cb(nx_loop *loop, nx_timer *t)
{
    int i = (int)(t - O.t);
    if (nx_loop_now(loop) < t->when)
        O.early = true;
    O.order[O.n++] = i;
    if (O.n == 5)
        nx_loop_stop(loop);
}

Test(loop, timers_fire_in_deadline_order)
{
    nx_loop *loop = nx_loop_new();
    memset(&O, 0, sizeof(O));
    O.start = nx_loop_now(loop);
    static const uint64_t delay[5] = {20, 5, 15, 10, 25};
    for (int i = 0; i < 5; i++) {
        O.t[i].cb = order_cb;
        nx_timer_set(loop, &O.t[i], O.start + delay[i]);
    }
    cr_assert_eq(nx_loop_run(loop), NX_OK);
    static const int want[5] = {1, 3, 2, 0, 4};
    cr_assert_eq(O.n, 5);
    for (int i = 0; i < 5; i++)
        cr_expect_eq(O.order[i], want[i], "position %d: timer %d", i, O.order[i]);
    cr_expect(!O.early, "a timer fired before its deadline");
    cr_expect_geq(nx_loop_now(loop), O.start + 25);
    cr_expect_geq(nx_now_ms(), O.start + 25);
    nx_loop_free(loop);
}

/* A callback may re-arm its own timer and cancel another that is already due. */
typedef struct rearm_fixture {
    nx_timer periodic, victim, killer, stopper;
    int periodic_runs, victim_runs;
} rearm_fixture;

static rearm_fixture R;

static void periodic_cb(nx_loop *loop, nx_timer *t)
{
    if (++R.periodic_runs < 3)
        nx_timer_set(loop, t, nx_loop_now(loop) + 2);
}

static void victim_cb(nx_loop *loop, nx_timer *t)
{
    R.victim_runs++;
}

static void killer_cb(nx_loop *loop, nx_timer *t)
{
    nx_timer_cancel(loop, &R.victim);
}

static void stopper_cb(nx_loop *loop, nx_timer *t)
{
    nx_loop_stop(loop);
}

Test(loop, timer_callbacks_rearm_and_cancel)
{
    nx_loop *loop = nx_loop_new();
    memset(&R, 0, sizeof(R));
    uint64_t now = nx_loop_now(loop);
    R.periodic.cb = periodic_cb;
    R.victim.cb = victim_cb;
    R.killer.cb = killer_cb;
    R.stopper.cb = stopper_cb;
    nx_timer_set(loop, &R.periodic, now + 1);
    /* both due in the same iteration: killer first (earlier deadline) cancels victim */
    nx_timer_set(loop, &R.killer, now - 2);
    nx_timer_set(loop, &R.victim, now - 1);
    nx_timer_set(loop, &R.stopper, now + 30);
    cr_assert_eq(nx_loop_run(loop), NX_OK);
    cr_expect_eq(R.periodic_runs, 3);
    cr_expect_eq(R.victim_runs, 0, "a cancelled timer fired");
    cr_expect_eq(nx_loop_timer_count(loop), 0);
    nx_loop_free(loop);
}

/*
 * A callback that re-arms its timer at the loop's cached now ("next iteration") must not
 * keep the loop inside one iteration: the tick hooks (and io) must still get their turn.
 * (fire_timers re-reads the heap without refreshing the clock, so the timer would be due
 * again at once, forever.)
 */
typedef struct spin_fixture {
    nx_timer t;
    long fires;
    int ticks;
} spin_fixture;

static spin_fixture S;

static void spin_cb(nx_loop *loop, nx_timer *t)
{
    S.fires++;
    if (S.fires < 5000000)
        nx_timer_set(loop, t, nx_loop_now(loop));
}

static void spin_tick(nx_loop *loop, void *arg)
{
    S.ticks++;
    nx_loop_stop(loop);
}

Test(loop, timer_rearmed_at_now_waits_for_next_iteration)
{
    nx_loop *loop = nx_loop_new();
    memset(&S, 0, sizeof(S));
    S.t.cb = spin_cb;
    nx_timer_set(loop, &S.t, nx_loop_now(loop));
    nx_loop_on_tick(loop, spin_tick, NULL);
    nx_loop_run(loop);
    cr_expect_eq(S.ticks, 1);
    cr_expect_eq(S.fires, 1, "the timer fired %ld times before the iteration ended", S.fires);
    nx_timer_cancel(loop, &S.t);
    nx_loop_free(loop);
}

/* ---- io ------------------------------------------------------------------------------- */

typedef struct io_fixture {
    nx_io io;
    int peer;
    char got[64];
    size_t got_len;
    uint32_t events;
    int calls;
    bool guard_fired;
    nx_timer writer, guard;
} io_fixture;

static io_fixture F;

static void read_cb(nx_loop *loop, nx_io *io, uint32_t events)
{
    F.calls++;
    F.events |= events;
    for (;;) {
        ssize_t n = read(io->fd, F.got + F.got_len, sizeof(F.got) - 1 - F.got_len);
        if (n <= 0)
            break;
        F.got_len += (size_t)n;
    }
    F.got[F.got_len] = '\0';
    if (F.got_len >= 4)
        nx_loop_stop(loop);
}

static void writer_cb(nx_loop *loop, nx_timer *t)
{
    ssize_t n = write(F.peer, "ping", 4);
    cr_assert_eq(n, 4);
}

static void guard_cb(nx_loop *loop, nx_timer *t)
{
    F.guard_fired = true;
    nx_loop_stop(loop);
}

static void io_setup(void)
{
    memset(&F, 0, sizeof(F));
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    F.io.fd = sv[0];
    F.peer = sv[1];
    F.writer.cb = writer_cb;
    F.guard.cb = guard_cb;
}

static void io_teardown(void)
{
    close(F.io.fd);
    close(F.peer);
}

Test(loop, io_callback_on_readable, .init = io_setup, .fini = io_teardown)
{
    nx_loop *loop = nx_loop_new();
    F.io.cb = read_cb;
    cr_assert_eq(nx_loop_add(loop, &F.io, EPOLLIN | EPOLLET), NX_OK);
    nx_timer_set(loop, &F.writer, nx_loop_now(loop) + 5);
    nx_timer_set(loop, &F.guard, nx_loop_now(loop) + 2000);
    cr_assert_eq(nx_loop_run(loop), NX_OK);
    cr_expect(!F.guard_fired, "no io callback within 2 s");
    cr_expect_str_eq(F.got, "ping");
    cr_expect(F.events & EPOLLIN);
    cr_expect_eq(F.calls, 1);
    nx_timer_cancel(loop, &F.guard);
    cr_expect_eq(nx_loop_del(loop, &F.io), NX_OK);
    nx_loop_free(loop);
}

/* Data already waiting when the fd is added is reported in the first iteration. */
Test(loop, io_ready_before_add, .init = io_setup, .fini = io_teardown)
{
    nx_loop *loop = nx_loop_new();
    F.io.cb = read_cb;
    cr_assert_eq(write(F.peer, "pong", 4), 4);
    cr_assert_eq(nx_loop_add(loop, &F.io, EPOLLIN | EPOLLET), NX_OK);
    nx_timer_set(loop, &F.guard, nx_loop_now(loop) + 2000);
    cr_assert_eq(nx_loop_run(loop), NX_OK);
    cr_expect(!F.guard_fired);
    cr_expect_str_eq(F.got, "pong");
    nx_loop_free(loop);
}

static void count_cb(nx_loop *loop, nx_io *io, uint32_t events)
{
    F.calls++;
    F.events |= events;
    if (events & EPOLLOUT)
        nx_loop_stop(loop);
}

Test(loop, io_del_and_mod, .init = io_setup, .fini = io_teardown)
{
    nx_loop *loop = nx_loop_new();
    F.io.cb = count_cb;
    cr_assert_eq(nx_loop_add(loop, &F.io, EPOLLIN | EPOLLET), NX_OK);
    cr_assert_eq(nx_loop_del(loop, &F.io), NX_OK);
    /* data arrives after del: no callback */
    nx_timer_set(loop, &F.writer, nx_loop_now(loop) + 2);
    nx_timer_set(loop, &F.guard, nx_loop_now(loop) + 20);
    cr_assert_eq(nx_loop_run(loop), NX_OK);
    cr_expect(F.guard_fired);
    cr_expect_eq(F.calls, 0, "callback after nx_loop_del");

    /* re-add for EPOLLIN, then switch to EPOLLOUT: a socket with room is writable */
    F.guard_fired = false;
    cr_assert_eq(nx_loop_add(loop, &F.io, EPOLLIN | EPOLLET), NX_OK);
    cr_assert_eq(nx_loop_mod(loop, &F.io, EPOLLOUT | EPOLLET), NX_OK);
    nx_timer_set(loop, &F.guard, nx_loop_now(loop) + 2000);
    cr_assert_eq(nx_loop_run(loop), NX_OK);
    cr_expect(!F.guard_fired);
    cr_expect(F.events & EPOLLOUT);
    nx_timer_cancel(loop, &F.guard);
    nx_loop_free(loop);
}

Test(loop, io_errors, .init = io_setup, .fini = io_teardown)
{
    nx_loop *loop = nx_loop_new();
    F.io.cb = count_cb;
    nx_io bad = {.fd = -1, .cb = count_cb};
    errno = 0;
    cr_expect_eq(nx_loop_add(loop, &bad, EPOLLIN), NX_ERR);
    cr_expect_eq(errno, EBADF);
    cr_expect_eq(nx_loop_add(loop, &F.io, EPOLLIN), NX_OK);
    errno = 0;
    cr_expect_eq(nx_loop_add(loop, &F.io, EPOLLIN), NX_ERR, "added twice");
    cr_expect_eq(errno, EEXIST);
    cr_expect_eq(nx_loop_del(loop, &F.io), NX_OK);
    errno = 0;
    cr_expect_eq(nx_loop_del(loop, &F.io), NX_ERR, "deleted twice");
    cr_expect_eq(errno, ENOENT);
    errno = 0;
    cr_expect_eq(nx_loop_mod(loop, &F.io, EPOLLIN), NX_ERR, "modified after del");
    cr_expect_eq(errno, ENOENT);
    nx_loop_free(loop);
}

/* ---- ticks, stop, clocks -------------------------------------------------------------- */

typedef struct tick_fixture {
    char seq[1024];
    size_t n;
    nx_timer t;
    int timer_runs;
} tick_fixture;

static tick_fixture T;

static void seq_add(char c)
{
    if (T.n < sizeof(T.seq) - 1) {
        T.seq[T.n++] = c;
        T.seq[T.n] = '\0';
    }
}

static void tick_timer_cb(nx_loop *loop, nx_timer *t)
{
    T.timer_runs++;
    seq_add('T');
    nx_timer_set(loop, t, nx_loop_now(loop) + 1);
}

static void tick_a(nx_loop *loop, void *arg)
{
    seq_add(*(const char *)arg);
}

static void tick_b(nx_loop *loop, void *arg)
{
    seq_add(*(const char *)arg);
    if (T.timer_runs == 3)
        nx_loop_stop(loop);
}

Test(loop, tick_hooks_run_after_timers_each_iteration)
{
    nx_loop *loop = nx_loop_new();
    memset(&T, 0, sizeof(T));
    static const char a = 'a', b = 'b';
    T.t.cb = tick_timer_cb;
    nx_timer_set(loop, &T.t, nx_loop_now(loop));
    nx_loop_on_tick(loop, tick_a, (void *)&a);
    nx_loop_on_tick(loop, tick_b, (void *)&b);
    cr_assert_eq(nx_loop_run(loop), NX_OK);
    /* The first iteration fires the due timer, then the ticks. A later iteration may end
     * without the timer (woken before the coarse clock moved on): drop those. */
    char filtered[sizeof(T.seq)];
    size_t k = 0;
    for (size_t i = 0; i < T.n; i++) {
        if (T.seq[i] == 'a' && T.seq[i + 1] == 'b' && i > 0 && T.seq[i - 1] != 'T') {
            i++;
            continue;
        }
        filtered[k++] = T.seq[i];
    }
    filtered[k] = '\0';
    cr_expect_str_eq(filtered, "TabTabTab", "sequence '%s'", T.seq);
    cr_expect_eq(T.timer_runs, 3);
    nx_timer_cancel(loop, &T.t);
    nx_loop_free(loop);
}

/* nx_loop_stop ends nx_loop_run; a later nx_loop_run starts afresh. */
Test(loop, stop_and_run_again)
{
    nx_loop *loop = nx_loop_new();
    memset(&R, 0, sizeof(R));
    R.stopper.cb = stopper_cb;
    for (int round = 0; round < 3; round++) {
        uint64_t start = nx_loop_now(loop);
        nx_timer_set(loop, &R.stopper, start + 5);
        cr_assert_eq(nx_loop_run(loop), NX_OK);
        cr_expect_geq(nx_loop_now(loop), start + 5, "round %d", round);
        cr_expect(!nx_timer_is_armed(&R.stopper));
    }
    nx_loop_free(loop);
}

Test(loop, clocks)
{
    nx_loop *loop = nx_loop_new();
    int64_t wall = nx_loop_wall(loop);
    time_t t = time(NULL);
    cr_expect(wall >= (int64_t)t - 2 && wall <= (int64_t)t + 2, "wall %lld, time %lld",
              (long long)wall, (long long)t);
    uint64_t now = nx_loop_now(loop);
    uint64_t real = nx_now_ms();
    cr_expect(now <= real && real - now < 1000, "loop now %llu, nx_now_ms %llu",
              (unsigned long long)now, (unsigned long long)real);
    nx_loop_free(loop);
    nx_loop_free(NULL);
}
