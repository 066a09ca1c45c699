/*
 * buf_test.c - pooled byte buffers: sizes, the pool (reuse, its bound, what it refuses),
 * and nx_buf_reserve choosing compaction over growth when moving bytes suffices.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "core/buf.h"
#include "core/util.h"

static void fill_seq(nx_buf *b, size_t n, unsigned seed)
{
    nx_buf_reserve(b, n);
    for (size_t i = 0; i < n; i++)
        b->data[b->end + i] = (char)(seed + i * 13);
    b->end += n;
}

static bool seq_ok(const char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (char)(seed + i * 13))
            return false;
    return true;
}

static void drain_pool(void)
{
    nx_buf_pool_drain();
}

TestSuite(buf, .init = drain_pool, .fini = drain_pool);

Test(buf, get_sizes)
{
    nx_buf *b = nx_buf_get(0);
    cr_assert_not_null(b);
    cr_expect_eq(b->cap, NX_BUF_SIZE);
    cr_expect_eq(b->start, 0);
    cr_expect_eq(b->end, 0);
    cr_expect_eq(nx_buf_len(b), 0);
    b->data[NX_BUF_SIZE - 1] = 'x'; /* the whole capacity is usable */

    nx_buf *small = nx_buf_get(10);
    cr_expect_eq(small->cap, NX_BUF_SIZE, "small requests get a standard buffer");
    nx_buf *big = nx_buf_get(NX_BUF_SIZE * 3 + 1);
    cr_expect_eq(big->cap, NX_BUF_SIZE * 3 + 1, "large buffers are allocated exactly");
    big->data[big->cap - 1] = 'y';
    nx_buf_put(b);
    nx_buf_put(small);
    nx_buf_put(big);
    nx_buf_put(NULL);
}

Test(buf, append_and_len)
{
    nx_buf *b = nx_buf_get(0);
    nx_buf_append(b, "hello", 5);
    nx_buf_append(b, ", ", 2);
    nx_buf_append(b, "world", 5);
    nx_buf_append(b, "", 0);
    cr_expect_eq(nx_buf_len(b), 12);
    cr_expect_eq(memcmp(b->data + b->start, "hello, world", 12), 0);
    b->start += 7; /* consume "hello, " */
    cr_expect_eq(nx_buf_len(b), 5);
    cr_expect_eq(memcmp(b->data + b->start, "world", 5), 0);
    nx_buf_put(b);
}

/* Pooled buffers come back empty, most recently returned first. */
Test(buf, pool_reuse)
{
    nx_buf *a = nx_buf_get(0);
    nx_buf *b = nx_buf_get(0);
    nx_buf_append(a, "aaaa", 4);
    nx_buf_append(b, "bbbb", 4);
    b->start = 2;
    char *b_data = b->data;
    nx_buf_put(a);
    nx_buf_put(b);
    nx_buf *c = nx_buf_get(100);
    cr_expect_eq(c, b, "the last returned buffer is reused first");
    cr_expect_eq(c->data, b_data, "its storage too");
    cr_expect_eq(c->start, 0);
    cr_expect_eq(c->end, 0);
    cr_expect_eq(c->cap, NX_BUF_SIZE);
    nx_buf *d = nx_buf_get(0);
    cr_expect_eq(d, a);
    cr_expect_eq(nx_buf_len(d), 0);
    /* larger than a pooled buffer: never served from the pool */
    nx_buf_put(d);
    nx_buf *e = nx_buf_get(NX_BUF_SIZE + 1);
    cr_expect_neq(e, a, "a pooled buffer of NX_BUF_SIZE served a larger request");
    cr_expect_geq(e->cap, NX_BUF_SIZE + 1);
    nx_buf *f = nx_buf_get(NX_BUF_SIZE);
    cr_expect_eq(f, a, "a request of exactly NX_BUF_SIZE is served from the pool");
    nx_buf_put(c);
    nx_buf_put(e);
    nx_buf_put(f);
}

/* A buffer that grew is freed on put, not pooled: the pool hands out standard sizes only. */
Test(buf, grown_buffers_are_not_pooled)
{
    nx_buf *g = nx_buf_get(0);
    fill_seq(g, NX_BUF_SIZE + 10, 1);
    cr_assert_gt(g->cap, NX_BUF_SIZE);
    nx_buf_put(g);
    nx_buf *h = nx_buf_get(0);
    cr_expect_eq(h->cap, NX_BUF_SIZE);
    nx_buf *big = nx_buf_get(NX_BUF_SIZE * 2);
    nx_buf_put(big);
    nx_buf *k = nx_buf_get(0);
    cr_expect_eq(k->cap, NX_BUF_SIZE, "a large buffer went into the pool");
    nx_buf_put(h);
    nx_buf_put(k);
}

/* More buffers than the pool holds: all come back intact, and none is handed out twice. */
Test(buf, pool_overflow)
{
    enum { N = 400 };
    static nx_buf *bufs[N];
    for (int i = 0; i < N; i++) {
        bufs[i] = nx_buf_get(0);
        fill_seq(bufs[i], 100, (unsigned)i);
    }
    for (int i = 0; i < N; i++) {
        cr_assert(seq_ok(bufs[i]->data, 100, (unsigned)i), "buffer %d", i);
        nx_buf_put(bufs[i]);
    }
    for (int i = 0; i < N; i++) {
        bufs[i] = nx_buf_get(0);
        cr_assert_eq(bufs[i]->cap, NX_BUF_SIZE);
        cr_assert_eq(nx_buf_len(bufs[i]), 0);
        for (int j = 0; j < i; j++)
            cr_assert_neq(bufs[j], bufs[i], "buffer handed out twice (%d and %d)", j, i);
        fill_seq(bufs[i], NX_BUF_SIZE, (unsigned)i);
    }
    for (int i = 0; i < N; i++) {
        cr_assert(seq_ok(bufs[i]->data, NX_BUF_SIZE, (unsigned)i), "buffer %d", i);
        nx_buf_put(bufs[i]);
    }
}

/* Room at the end already: nothing moves. */
Test(buf, reserve_noop_when_room)
{
    nx_buf *b = nx_buf_get(0);
    fill_seq(b, 1000, 3);
    b->start = 500;
    char *data = b->data;
    nx_buf_reserve(b, NX_BUF_SIZE - 1000);
    cr_expect_eq(b->data, data);
    cr_expect_eq(b->start, 500);
    cr_expect_eq(b->end, 1000);
    cr_expect_eq(b->cap, NX_BUF_SIZE);
    nx_buf_put(b);
}

/* Consumed bytes at the front make enough room: the data moves down, no reallocation. */
Test(buf, reserve_compacts)
{
    nx_buf *b = nx_buf_get(0);
    fill_seq(b, 16000, 7);
    b->start = 10000; /* 6000 unconsumed bytes at [10000, 16000) */
    char *data = b->data;
    nx_buf_reserve(b, 5000); /* 384 free at the end, 10384 after compaction */
    cr_expect_eq(b->data, data, "reallocated although compaction sufficed");
    cr_expect_eq(b->cap, NX_BUF_SIZE);
    cr_expect_eq(b->start, 0);
    cr_expect_eq(b->end, 6000);
    cr_expect(seq_ok(b->data, 6000, 7 + 10000 * 13), "the unconsumed bytes were not kept");
    cr_expect_geq(b->cap - b->end, 5000);

    /* exactly fitting after compaction */
    b->start = 1000; /* 5000 unconsumed, cap - used = 11384 */
    nx_buf_reserve(b, NX_BUF_SIZE - 5000);
    cr_expect_eq(b->data, data);
    cr_expect_eq(b->start, 0);
    cr_expect_eq(b->end, 5000);
    cr_expect_eq(b->cap - b->end, NX_BUF_SIZE - 5000);
    nx_buf_put(b);
}

/* Not enough room even after compaction: the buffer grows (doubling) and keeps its bytes. */
Test(buf, reserve_grows)
{
    nx_buf *b = nx_buf_get(0);
    fill_seq(b, 16000, 9);
    b->start = 10000; /* 6000 unconsumed */
    nx_buf_reserve(b, 20000);
    cr_expect_eq(b->cap, 2 * NX_BUF_SIZE, "cap %zu", b->cap);
    cr_expect_eq(b->start, 0);
    cr_expect_eq(b->end, 6000);
    cr_expect_geq(b->cap - b->end, 20000);
    cr_expect(seq_ok(b->data, 6000, 9 + 10000 * 13));
    /* growth by several doublings at once */
    nx_buf_reserve(b, 200000);
    cr_expect_eq(b->cap, 16 * NX_BUF_SIZE, "cap %zu", b->cap);
    cr_expect_eq(b->end, 6000);
    cr_expect(seq_ok(b->data, 6000, 9 + 10000 * 13));
    /* nothing consumed, full: grows without compaction */
    nx_buf *c = nx_buf_get(0);
    fill_seq(c, NX_BUF_SIZE, 11);
    nx_buf_reserve(c, 1);
    cr_expect_eq(c->cap, 2 * NX_BUF_SIZE);
    cr_expect(seq_ok(c->data, NX_BUF_SIZE, 11));
    nx_buf_put(b);
    nx_buf_put(c);
}

/* Many appends of odd sizes with consumption in between: the content is a byte stream. */
Test(buf, append_consume_stream)
{
    nx_buf *b = nx_buf_get(0);
    unsigned char next_in = 0, next_out = 0;
    size_t total = 0;
    for (int round = 0; round < 500; round++) {
        unsigned char chunk[3000];
        size_t n = (size_t)(round * 37 % 2999) + 1;
        for (size_t i = 0; i < n; i++)
            chunk[i] = next_in++;
        nx_buf_append(b, chunk, n);
        total += n;
        /* consume a bit less than was appended, so the buffer slowly fills */
        size_t take = nx_buf_len(b) * 3 / 4;
        for (size_t i = 0; i < take; i++)
            cr_assert_eq((unsigned char)b->data[b->start + i], next_out++, "round %d byte %zu",
                         round, i);
        b->start += take;
    }
    while (nx_buf_len(b)) {
        cr_assert_eq((unsigned char)b->data[b->start], next_out++);
        b->start++;
    }
    cr_expect_eq(next_in, next_out);
    cr_expect_gt(total, 100000);
    nx_buf_put(b);
}
