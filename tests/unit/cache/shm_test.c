/*
 * shm_test.c - the memory cache's segment (src/cache/shm.c) through its backend table:
 * values, expiry, counters, eviction order, classes taking pages from each other, and the
 * one property the segment exists for: processes forked after it share every entry.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache_impl.h"
#include "core/arena.h"

static const nx_cache_backend *be = &nx_cache_shm_backend;
static nx_arena *arena;
static nx_cache_call call;

static void setup(void)
{
    arena = nx_arena_new(0);
    call = (nx_cache_call){.arena = arena};
}

static void teardown(void)
{
    nx_arena_free(arena);
    nx_cache_shm_destroy();
}

static int put(const char *k, const char *v, uint64_t ttl)
{
    return be->set(&call, k, strlen(k), v, strlen(v), ttl);
}

static int put_n(const char *k, size_t n, uint64_t ttl)
{
    static char buf[64 * 1024];
    memset(buf, 'v', n);
    return be->set(&call, k, strlen(k), buf, n, ttl);
}

static bool has(const char *k)
{
    nx_str v;
    return be->get(&call, k, strlen(k), &v) == NX_OK;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

TestSuite(shm, .init = setup, .fini = teardown);

Test(shm, set_get_overwrite_delete)
{
    cr_assert_eq(nx_cache_shm_create(1 << 20), NX_OK);
    nx_str v;
    cr_assert_eq(be->get(&call, "a", 1, &v), NX_CACHE_MISS);
    cr_assert_eq(put("a", "one", 10000), NX_OK);
    cr_assert_eq(be->get(&call, "a", 1, &v), NX_OK);
    cr_assert_eq(v.len, 3);
    cr_assert_str_eq(v.ptr, "one");
    cr_assert_eq(put("a", "two!", 10000), NX_OK);
    cr_assert_eq(be->get(&call, "a", 1, &v), NX_OK);
    cr_assert_str_eq(v.ptr, "two!");
    cr_assert_eq(be->exists(&call, "a", 1), NX_OK);
    cr_assert_eq(be->del(&call, "a", 1), NX_OK);
    cr_assert_eq(be->exists(&call, "a", 1), NX_CACHE_MISS);
    nx_cache_shm_stats st;
    nx_cache_shm_stats_get(&st);
    cr_assert_eq(st.entries, 0);
}

Test(shm, binary_values_and_empty_ones)
{
    cr_assert_eq(nx_cache_shm_create(1 << 20), NX_OK);
    const char bin[] = {'x', 0, 'y', 0};
    cr_assert_eq(be->set(&call, "b", 1, bin, sizeof(bin), 10000), NX_OK);
    nx_str v;
    cr_assert_eq(be->get(&call, "b", 1, &v), NX_OK);
    cr_assert_eq(v.len, sizeof(bin));
    cr_assert_eq(memcmp(v.ptr, bin, sizeof(bin)), 0);
    cr_assert_eq(be->set(&call, "e", 1, "", 0, 10000), NX_OK);
    cr_assert_eq(be->get(&call, "e", 1, &v), NX_OK);
    cr_assert_eq(v.len, 0);
}

Test(shm, expiry)
{
    cr_assert_eq(nx_cache_shm_create(1 << 20), NX_OK);
    cr_assert_eq(put("short", "x", 60), NX_OK);
    cr_assert_eq(put("long", "x", 60000), NX_OK);
    cr_assert_eq(put("forever", "x", NX_CACHE_FOREVER), NX_OK);
    cr_assert(has("short"));
    sleep_ms(120);
    cr_assert(!has("short"));
    cr_assert_eq(be->exists(&call, "short", 5), NX_CACHE_MISS);
    cr_assert(has("long"));
    cr_assert(has("forever"));
}

Test(shm, incr)
{
    cr_assert_eq(nx_cache_shm_create(1 << 20), NX_OK);
    int64_t v = 0;
    cr_assert_eq(be->incr(&call, "n", 1, 5, 10000, &v), NX_OK);
    cr_assert_eq(v, 5);
    cr_assert_eq(be->incr(&call, "n", 1, -7, 10000, &v), NX_OK);
    cr_assert_eq(v, -2);
    nx_str s;
    cr_assert_eq(be->get(&call, "n", 1, &s), NX_OK);
    cr_assert_str_eq(s.ptr, "-2");
    cr_assert_eq(put("t", "text", 10000), NX_OK);
    cr_assert_eq(be->incr(&call, "t", 1, 1, 10000, &v), NX_ERR);
    cr_assert_eq(put("big", "9223372036854775807", 10000), NX_OK);
    cr_assert_eq(be->incr(&call, "big", 3, 1, 10000, &v), NX_ERR, "overflow must be refused");
}

Test(shm, incr_keeps_the_first_expiry)
{
    cr_assert_eq(nx_cache_shm_create(1 << 20), NX_OK);
    int64_t v;
    cr_assert_eq(be->incr(&call, "w", 1, 1, 80, &v), NX_OK);
    sleep_ms(40);
    cr_assert_eq(be->incr(&call, "w", 1, 1, 80, &v), NX_OK);
    cr_assert_eq(v, 2);
    sleep_ms(70);
    cr_assert(!has("w"), "a window counter expires from its first increment");
}

Test(shm, delete_prefix)
{
    cr_assert_eq(nx_cache_shm_create(1 << 20), NX_OK);
    put("todo:1", "a", 10000);
    put("todo:2", "b", 10000);
    put("todos:list", "c", 10000);
    put("user:1", "d", 10000);
    cr_assert_eq(be->del_prefix(&call, "todo:", 5), NX_OK);
    cr_assert(!has("todo:1"));
    cr_assert(!has("todo:2"));
    cr_assert(has("todos:list"));
    cr_assert(has("user:1"));
}

Test(shm, least_recently_used_goes_first)
{
    cr_assert_eq(nx_cache_shm_create(256 << 10), NX_OK);
    char k[32];
    /* Far more 1 KiB entries than fit, reading key 0 after every write keeps it warm. */
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        cr_assert_eq(put_n(k, 1000, 100000), NX_OK);
        cr_assert(has("k0"), "the entry read after every write was evicted at %d", i);
    }
    cr_assert(has("k1999"));
    cr_assert(!has("k1"), "the oldest untouched entry should be gone");
    nx_cache_shm_stats st;
    nx_cache_shm_stats_get(&st);
    cr_assert_gt(st.evictions, 1000);
    cr_assert_leq(st.bytes_used, 256 << 10);
}

Test(shm, a_class_without_pages_takes_one)
{
    cr_assert_eq(nx_cache_shm_create(256 << 10), NX_OK);
    char k[32];
    for (int i = 0; i < 500; i++) {
        snprintf(k, sizeof(k), "big%d", i);
        cr_assert_eq(put_n(k, 3000, 100000), NX_OK);
    }
    /* Every page now holds 3 KB entries; small ones must still find room. */
    for (int i = 0; i < 50; i++) {
        snprintf(k, sizeof(k), "s%d", i);
        cr_assert_eq(put(k, "x", 100000), NX_OK);
    }
    for (int i = 0; i < 50; i++) {
        snprintf(k, sizeof(k), "s%d", i);
        cr_assert(has(k), "%s", k);
    }
}

Test(shm, too_large_is_an_error_not_a_crash)
{
    cr_assert_eq(nx_cache_shm_create(256 << 10), NX_OK);
    cr_assert_eq(put_n("huge", 60000, 1000), NX_ERR);
    cr_assert(strstr(call.error, "larger"), "%s", call.error);
    cr_assert_eq(put("after", "ok", 1000), NX_OK);
}

Test(shm, processes_forked_after_share_entries_and_counters)
{
    cr_assert_eq(nx_cache_shm_create(1 << 20), NX_OK);
    enum { KIDS = 4, EACH = 2000 };
    pid_t kids[KIDS];
    for (int i = 0; i < KIDS; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            int64_t v;
            for (int j = 0; j < EACH; j++)
                if (be->incr(&call, "hits", 4, 1, 100000, &v) != NX_OK)
                    _exit(1);
            char k[32], val[32];
            snprintf(k, sizeof(k), "from%d", i);
            snprintf(val, sizeof(val), "%d", (int)getpid());
            _exit(put(k, val, 100000) == NX_OK ? 0 : 1);
        }
    }
    for (int i = 0; i < KIDS; i++) {
        int status;
        waitpid(kids[i], &status, 0);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    nx_str v;
    cr_assert_eq(be->get(&call, "hits", 4, &v), NX_OK);
    cr_assert_eq(atoll(v.ptr), KIDS * EACH, "lost increments: %s", v.ptr);
    for (int i = 0; i < KIDS; i++) {
        char k[32];
        snprintf(k, sizeof(k), "from%d", i);
        cr_assert_eq(be->get(&call, k, strlen(k), &v), NX_OK);
        cr_assert_eq(atoi(v.ptr), kids[i]);
    }
}
