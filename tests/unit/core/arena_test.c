/*
 * arena_test.c - bump allocation in blocks: alignment, block boundaries, big allocations,
 * reset and cleanup hooks, the string helpers, and the overflow checks that abort.
 *
 * Every allocation is written over its whole length and checked later, so that overlapping
 * blocks or a block too small for its allocation show up as corrupted data here (and as
 * errors under AddressSanitizer).
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/arena.h"
#include "core/util.h"

#define ALIGN 16

static bool aligned(const void *p)
{
    return ((uintptr_t)p % ALIGN) == 0;
}

static size_t rounded(size_t n)
{
    return (n + ALIGN - 1) / ALIGN * ALIGN;
}

static void fill(void *p, size_t n, unsigned seed)
{
    unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        c[i] = (unsigned char)(seed * 31u + i);
}

static bool check(const void *p, size_t n, unsigned seed)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != (unsigned char)(seed * 31u + i))
            return false;
    return true;
}

Test(arena, alignment_of_every_size)
{
    size_t blocks[] = {0, 64, 100, 4096};
    for (size_t b = 0; b < NX_ARRAY_LEN(blocks); b++) {
        nx_arena *a = nx_arena_new(blocks[b]);
        for (size_t size = 1; size <= 300; size++) {
            void *p = nx_arena_alloc(a, size);
            cr_assert_not_null(p);
            cr_expect(aligned(p), "block %zu, size %zu: %p not %d-aligned", blocks[b], size, p,
                      ALIGN);
            fill(p, size, (unsigned)size);
        }
        nx_arena_free(a);
    }
}

/* Many small objects spill over several blocks; none overlaps another. */
Test(arena, many_small_allocs_cross_blocks)
{
    enum { N = 2000, SIZE = 24 };
    nx_arena *a = nx_arena_new(256);
    unsigned char *ptrs[N];
    size_t adjacent = 0;
    for (unsigned i = 0; i < N; i++) {
        ptrs[i] = nx_arena_alloc(a, SIZE);
        cr_assert(aligned(ptrs[i]));
        fill(ptrs[i], SIZE, i);
        if (i && ptrs[i] == ptrs[i - 1] + rounded(SIZE))
            adjacent++;
    }
    for (unsigned i = 0; i < N; i++)
        cr_assert(check(ptrs[i], SIZE, i), "object %u was overwritten", i);
    /* 256-byte blocks hold 8 objects of 32 bytes: most are adjacent, some start a block */
    cr_expect_gt(adjacent, N / 2);
    cr_expect_lt(adjacent, N - 1, "%zu of %d allocations in one block of 256 bytes", adjacent, N);
    cr_expect_eq(nx_arena_used(a), (size_t)N * rounded(SIZE));
    nx_arena_free(a);
}

/* The default block holds NX_ARENA_BLOCK bytes: four quarter-block allocations are adjacent. */
Test(arena, default_block_size)
{
    nx_arena *a = nx_arena_new(0);
    char *first = nx_arena_alloc(a, NX_ARENA_BLOCK / 4);
    for (int i = 1; i < 4; i++) {
        char *p = nx_arena_alloc(a, NX_ARENA_BLOCK / 4);
        cr_expect_eq(p, first + (size_t)i * (NX_ARENA_BLOCK / 4), "allocation %d", i);
    }
    nx_arena_free(a);
}

/*
 * Over a quarter of a block and not fitting in the current block: a block of its own, and
 * the current block keeps filling (one big body does not waste the rest of it).
 */
Test(arena, big_alloc_gets_own_block)
{
    enum { BS = 1024 };
    nx_arena *a = nx_arena_new(BS);
    /* fill the first block exactly, so that the next one is a normal block of the chain */
    for (int i = 0; i < 8; i++)
        fill(nx_arena_alloc(a, BS / 8), BS / 8, (unsigned)i);
    char *small1 = nx_arena_alloc(a, 16);
    fill(small1, 16, 100);
    /* a big one that fits in the current block goes there */
    char *mid = nx_arena_alloc(a, 700);
    cr_expect_eq(mid, small1 + 16);
    fill(mid, 700, 101);
    /* 304 bytes left: this one does not fit and gets its own block */
    char *big = nx_arena_alloc(a, 400);
    cr_expect(aligned(big));
    fill(big, 400, 102);
    char *small2 = nx_arena_alloc(a, 16);
    cr_expect_eq(small2, mid + rounded(700), "the big allocation moved small ones to a new block");
    fill(small2, 16, 103);
    /* much larger than a block */
    char *huge = nx_arena_alloc(a, 10 * BS + 3);
    cr_expect(aligned(huge));
    fill(huge, 10 * BS + 3, 104);
    char *small3 = nx_arena_alloc(a, 16);
    cr_expect_eq(small3, small2 + 16);
    cr_expect(check(small1, 16, 100));
    cr_expect(check(mid, 700, 101));
    cr_expect(check(big, 400, 102));
    cr_expect(check(small2, 16, 103));
    cr_expect(check(huge, 10 * BS + 3, 104));
    cr_expect_eq(nx_arena_used(a), BS + 16 + rounded(700) + 400 + 16 + rounded(10 * BS + 3) + 16);
    /* the rest of the current block is still used: 1024 - 752 = 272 bytes, 17 of 16 */
    char *prev = small3;
    for (int i = 0; i < 17; i++) {
        char *p = nx_arena_alloc(a, 16);
        cr_expect_eq(p, prev + 16, "small allocation %d", i);
        prev = p;
    }
    nx_arena_free(a);
}

/* Exactly a quarter of a block is still a normal allocation. */
Test(arena, quarter_block_is_normal)
{
    enum { BS = 1024 };
    nx_arena *a = nx_arena_new(BS);
    char *p[4];
    for (int i = 0; i < 4; i++)
        p[i] = nx_arena_alloc(a, BS / 4);
    for (int i = 1; i < 4; i++)
        cr_expect_eq(p[i], p[0] + (size_t)i * (BS / 4));
    nx_arena_free(a);
}

/* A big allocation into a fresh arena, then small ones: all valid, all distinct. */
Test(arena, big_alloc_first)
{
    nx_arena *a = nx_arena_new(512);
    char *big = nx_arena_alloc(a, 5000);
    fill(big, 5000, 1);
    char *s[40];
    for (unsigned i = 0; i < 40; i++) {
        s[i] = nx_arena_alloc(a, 40);
        fill(s[i], 40, i + 2);
    }
    char *big2 = nx_arena_alloc(a, 300);
    fill(big2, 300, 99);
    cr_expect(check(big, 5000, 1));
    for (unsigned i = 0; i < 40; i++)
        cr_expect(check(s[i], 40, i + 2), "small %u", i);
    cr_expect(check(big2, 300, 99));
    nx_arena_free(a);
}

/* ---- reset and cleanups --------------------------------------------------------------- */

typedef struct hook_log {
    char seq[64];
    size_t n;
} hook_log;

typedef struct hook {
    hook_log *log;
    char id;
} hook;

static void log_hook(void *arg)
{
    hook *h = arg;
    cr_assert_lt(h->log->n, sizeof(h->log->seq) - 1);
    h->log->seq[h->log->n++] = h->id;
    h->log->seq[h->log->n] = '\0';
}

Test(arena, reset_runs_cleanups_newest_first_once)
{
    hook_log log = {.n = 0};
    hook h[3] = {{&log, 'a'}, {&log, 'b'}, {&log, 'c'}};
    nx_arena *a = nx_arena_new(256);
    char *first = nx_arena_alloc(a, 32);
    for (int i = 0; i < 3; i++) {
        nx_arena_on_cleanup(a, log_hook, &h[i]);
        /* spread the hooks over several blocks, with big allocations between them */
        nx_arena_alloc(a, 200);
        nx_arena_alloc(a, 1000);
    }
    cr_expect_str_eq(log.seq, "", "hooks ran before the reset");
    nx_arena_reset(a);
    cr_expect_str_eq(log.seq, "cba");
    cr_expect_eq(nx_arena_used(a), 0);

    /* the arena is as fresh: the first block is reused and works as before */
    char *again = nx_arena_alloc(a, 32);
    cr_expect_eq(again, first, "reset did not keep the first block");
    for (unsigned i = 0; i < 100; i++)
        fill(nx_arena_alloc(a, 50), 50, i);
    cr_expect_eq(nx_arena_used(a), 32 + 100 * rounded(50));

    nx_arena_reset(a);
    cr_expect_str_eq(log.seq, "cba", "hooks ran twice");
    nx_arena_on_cleanup(a, log_hook, &h[0]);
    nx_arena_free(a);
    cr_expect_str_eq(log.seq, "cbaa", "nx_arena_free must run the hooks registered since");
}

Test(arena, free_runs_cleanups_newest_first)
{
    hook_log log = {.n = 0};
    hook h[4] = {{&log, '1'}, {&log, '2'}, {&log, '3'}, {&log, '4'}};
    nx_arena *a = nx_arena_new(0);
    for (int i = 0; i < 4; i++)
        nx_arena_on_cleanup(a, log_hook, &h[i]);
    nx_arena_free(a);
    cr_expect_str_eq(log.seq, "4321");
    nx_arena_free(NULL);
}

/* A hook may allocate from the arena (small and big) and register more hooks. */
typedef struct greedy {
    hook_log *log;
    nx_arena *arena;
    hook late;
    int runs;
} greedy;

static void greedy_hook(void *arg)
{
    greedy *g = arg;
    g->runs++;
    char *s = nx_arena_alloc(g->arena, 40);
    fill(s, 40, 7);
    char *b = nx_arena_alloc(g->arena, 100000);
    fill(b, 100000, 8);
    char *p = nx_arena_printf(g->arena, "%s-%d", "cleanup", g->runs);
    cr_expect_str_eq(p, "cleanup-1");
    cr_expect(check(s, 40, 7));
    cr_expect(check(b, 100000, 8));
    nx_arena_on_cleanup(g->arena, log_hook, &g->late);
    log_hook(&(hook){g->log, 'g'});
}

Test(arena, cleanups_that_allocate_and_add_hooks)
{
    hook_log log = {.n = 0};
    hook first = {&log, 'f'};
    nx_arena *a = nx_arena_new(128);
    greedy g = {.log = &log, .arena = a, .late = {&log, 'l'}, .runs = 0};
    nx_arena_on_cleanup(a, log_hook, &first);
    nx_arena_on_cleanup(a, greedy_hook, &g);
    nx_arena_reset(a);
    cr_expect_eq(g.runs, 1);
    cr_expect_str_eq(log.seq, "glf", "a hook added by a hook runs in the same reset");
    cr_expect_eq(nx_arena_used(a), 0, "memory allocated by hooks is released by the reset");
    char *p = nx_arena_alloc(a, 64);
    fill(p, 64, 3);
    cr_expect(check(p, 64, 3));
    nx_arena_free(a);
    cr_expect_str_eq(log.seq, "glf", "hooks ran again at free");
}

/* Hooks themselves use arena memory, accounted in nx_arena_used. */
Test(arena, used_counts_rounded_bytes)
{
    nx_arena *a = nx_arena_new(0);
    cr_expect_eq(nx_arena_used(a), 0);
    nx_arena_alloc(a, 1);
    cr_expect_eq(nx_arena_used(a), 16);
    nx_arena_alloc(a, 16);
    cr_expect_eq(nx_arena_used(a), 32);
    nx_arena_alloc(a, 17);
    cr_expect_eq(nx_arena_used(a), 64);
    size_t before = nx_arena_used(a);
    hook_log log = {.n = 0};
    hook h = {&log, 'x'};
    nx_arena_on_cleanup(a, log_hook, &h);
    cr_expect_gt(nx_arena_used(a), before);
    nx_arena_reset(a);
    cr_expect_eq(nx_arena_used(a), 0);
    nx_arena_free(a);
}

/* ---- strings -------------------------------------------------------------------------- */

Test(arena, strdup_and_strndup)
{
    nx_arena *a = nx_arena_new(64);
    const char *src = "hello, arena";
    char *d = nx_arena_strdup(a, src);
    cr_expect_str_eq(d, src);
    cr_expect_neq(d, src);
    cr_expect(aligned(d));

    char *e = nx_arena_strdup(a, "");
    cr_expect_str_eq(e, "");

    /* strndup copies len bytes, even from an unterminated source, and terminates */
    char raw[5] = {'a', 'b', 'c', 'd', 'e'};
    char *n = nx_arena_strndup(a, raw, 3);
    cr_expect_str_eq(n, "abc");
    char *z = nx_arena_strndup(a, raw, 0);
    cr_expect_str_eq(z, "");
    /* embedded NUL bytes are copied too */
    char *emb = nx_arena_strndup(a, "a\0b", 3);
    cr_expect_eq(memcmp(emb, "a\0b\0", 4), 0);

    /* longer than a block */
    char long_src[1000];
    memset(long_src, 'q', sizeof(long_src) - 1);
    long_src[sizeof(long_src) - 1] = '\0';
    char *l = nx_arena_strdup(a, long_src);
    cr_expect_str_eq(l, long_src);
    cr_expect_str_eq(d, src, "an earlier copy was overwritten");
    nx_arena_free(a);
}

__attribute__((format(printf, 2, 3))) static char *via_vprintf(nx_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = nx_arena_vprintf(a, fmt, ap);
    va_end(ap);
    return p;
}

Test(arena, printf_short_and_long)
{
    nx_arena *a = nx_arena_new(128);
    cr_expect_str_eq(nx_arena_printf(a, "%s=%d", "x", 42), "x=42");
    cr_expect_str_eq(nx_arena_printf(a, "%s", ""), "");
    cr_expect_str_eq(via_vprintf(a, "%05.1f|%-3s|%x", 3.14159, "a", 255u), "003.1|a  |ff");

    /* around the 256-byte internal buffer, and far past a block */
    size_t lens[] = {254, 255, 256, 257, 300, 1000, 5000, 100000};
    for (size_t i = 0; i < NX_ARRAY_LEN(lens); i++) {
        size_t len = lens[i];
        char *arg = nx_arena_alloc(a, len + 1);
        for (size_t j = 0; j < len; j++)
            arg[j] = (char)('a' + (j * 7 + i) % 26);
        arg[len] = '\0';
        /* the formatted string is len + 6 bytes: "[" arg "]" and "-%03d" */
        char *p = nx_arena_printf(a, "[%s]-%03d", arg, (int)i);
        cr_assert_not_null(p);
        cr_expect_eq(strlen(p), len + 6, "length %zu: got %zu", len, strlen(p));
        cr_expect_eq(p[0], '[');
        cr_expect_eq(memcmp(p + 1, arg, len), 0, "length %zu: body differs", len);
        char tail[8];
        snprintf(tail, sizeof(tail), "]-%03d", (int)i);
        cr_expect_str_eq(p + 1 + len, tail, "length %zu", len);

        char *v = via_vprintf(a, "%s%s", arg, "!");
        cr_expect_eq(strlen(v), len + 1, "vprintf length %zu", len);
        cr_expect_eq(v[len], '!');
        cr_expect_eq(memcmp(v, arg, len), 0);
    }
    nx_arena_free(a);
}

/* ---- calloc --------------------------------------------------------------------------- */

Test(arena, calloc_zeroes_reused_memory)
{
    nx_arena *a = nx_arena_new(512);
    unsigned char *dirty = nx_arena_alloc(a, 512);
    memset(dirty, 0xAB, 512);
    unsigned char *dirty_small = nx_arena_alloc(a, 100);
    memset(dirty_small, 0xCD, 100);
    nx_arena_reset(a);
    /* the first block is handed out again: calloc must clear it */
    unsigned char *z = nx_arena_calloc(a, 10, 30);
    for (size_t i = 0; i < 300; i++)
        cr_assert_eq(z[i], 0, "byte %zu not zero", i);
    unsigned char *big = nx_arena_calloc(a, 1000, 8);
    for (size_t i = 0; i < 8000; i++)
        cr_assert_eq(big[i], 0, "big byte %zu not zero", i);
    cr_expect(aligned(nx_arena_calloc(a, 0, 8)));
    cr_expect(aligned(nx_arena_calloc(a, 8, 0)));
    nx_arena_free(a);
}

/* Sizes that overflow abort the worker instead of returning a short block. */
Test(arena, calloc_overflow_aborts, .signal = SIGABRT, .init = cr_redirect_stderr)
{
    nx_arena *a = nx_arena_new(0);
    nx_arena_calloc(a, SIZE_MAX / 2, 4);
    nx_arena_free(a);
}

Test(arena, alloc_overflow_aborts, .signal = SIGABRT, .init = cr_redirect_stderr)
{
    nx_arena *a = nx_arena_new(0);
    nx_arena_alloc(a, SIZE_MAX - 3);
    nx_arena_free(a);
}
