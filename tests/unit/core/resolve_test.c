/*
 * resolve_test.c - host names resolved off the loop: numeric hosts copied without a lookup,
 * "localhost" (from /etc/hosts, so no DNS server is needed) resolved in place, on a thread,
 * and from a coroutine parked on the loop while the thread works.
 */
#include <criterion/criterion.h>

#include <poll.h>
#include <string.h>
#include <unistd.h>

#include <nexus/http.h>

#include "core/coro.h"
#include "core/loop.h"
#include "core/resolve.h"

static bool has_loopback(const nx_addrs *a)
{
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->addr[i], "127.0.0.1") == 0 || strcmp(a->addr[i], "::1") == 0)
            return true;
    return false;
}

Test(resolve, numeric_hosts_are_recognised)
{
    cr_expect(nx_host_is_numeric("127.0.0.1"));
    cr_expect(nx_host_is_numeric("::1"));
    cr_expect(nx_host_is_numeric("2001:db8::5"));
    cr_expect(!nx_host_is_numeric("localhost"));
    cr_expect(!nx_host_is_numeric("postgres"));
    cr_expect(!nx_host_is_numeric("127.0.0.1.example"));
    cr_expect(!nx_host_is_numeric("/run/postgresql"));
    cr_expect(!nx_host_is_numeric(""));
}

Test(resolve, a_numeric_host_is_copied)
{
    nx_addrs a;
    char why[200];
    cr_assert_eq(nx_resolve(NULL, "10.1.2.3", &a, 0, why, sizeof(why)), NX_OK);
    cr_expect_eq(a.n, 1);
    cr_expect_str_eq(a.addr[0], "10.1.2.3");
}

Test(resolve, in_place_outside_a_coroutine)
{
    nx_addrs a;
    char why[200] = "";
    cr_assert_eq(nx_resolve(NULL, "localhost", &a, 0, why, sizeof(why)), NX_OK, "%s", why);
    cr_expect(a.n >= 1 && a.n <= NX_RESOLVE_MAX);
    cr_expect(has_loopback(&a));
    for (int i = 0; i < a.n; i++)
        for (int j = i + 1; j < a.n; j++)
            cr_expect_str_neq(a.addr[i], a.addr[j], "duplicates are dropped");
}

Test(resolve, on_a_thread)
{
    nx_lookup *l = nx_lookup_start("localhost");
    cr_assert_not_null(l);
    struct pollfd p = {.fd = nx_lookup_fd(l), .events = POLLIN};
    cr_assert_eq(poll(&p, 1, 5000), 1, "the lookup's fd never became readable");
    nx_addrs a;
    char why[200] = "";
    cr_assert_eq(nx_lookup_finish(l, &a, why, sizeof(why)), NX_OK, "%s", why);
    cr_expect(has_loopback(&a));
}

Test(resolve, an_abandoned_lookup_frees_itself)
{
    /* Under AddressSanitizer a lookup whose thread never let go would show as a leak. */
    for (int i = 0; i < 8; i++) {
        nx_lookup *l = nx_lookup_start("localhost");
        cr_assert_not_null(l);
        nx_lookup_abandon(l);
    }
    usleep(200 * 1000); /* the threads finish and free what they shared */
}

typedef struct resolve_job {
    nx_loop *loop;
    int rc;
    nx_addrs a;
    char why[200];
    bool parked; /* the coroutine was suspended while the thread looked up */
} resolve_job;

static void resolve_fn(void *arg)
{
    resolve_job *j = arg;
    j->rc = nx_resolve(j->loop, "localhost", &j->a, nx_loop_now(j->loop) + 5000, j->why,
                       sizeof(j->why));
    nx_loop_stop(j->loop);
}

Test(resolve, from_a_coroutine_the_loop_keeps_running)
{
    resolve_job j = {.loop = nx_loop_new(), .rc = 99};
    nx_coro *c = nx_coro_new(resolve_fn, &j);
    nx_coro_resume(c); /* runs until it parks on the lookup's eventfd */
    j.parked = !nx_coro_is_done(c);
    cr_assert_eq(nx_loop_run(j.loop), NX_OK);
    cr_expect(j.parked, "nx_resolve did not yield to the loop");
    cr_assert_eq(j.rc, NX_OK, "%s", j.why);
    cr_expect(has_loopback(&j.a));
    if (!nx_coro_is_done(c))
        nx_coro_resume(c); /* let it return */
    nx_coro_free(c);
    nx_loop_free(j.loop);
}
