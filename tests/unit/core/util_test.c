/*
 * util_test.c - the parsers for operator-written values: durations, sizes, and the
 * non-negative integers of paths and headers. Tables of valid inputs with their values,
 * invalid ones, and the edges where overflow starts.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

typedef struct u64_case {
    const char *in;
    int rc;         /* 0 or -1 */
    uint64_t value; /* when rc == 0 */
} u64_case;

/* clang-format off */
#define OK(s, v) {(s), 0, (v)}
#define BAD(s) {(s), -1, 0}
/* clang-format on */

#define SENTINEL 0xDEADBEEFull

Test(util, parse_duration_ms)
{
    static const u64_case cases[] = {
        /* bare numbers are seconds */
        OK("0", 0),
        OK("1", 1000),
        OK("30", 30000),
        OK("1.5", 1500),
        OK("0.25", 250),
        OK("0.0004", 0),
        OK("0.0005", 1),
        OK("007", 7000),
        /* units */
        OK("250ms", 250),
        OK("0ms", 0),
        OK("1.5ms", 2),
        OK("30s", 30000),
        OK("0.5s", 500),
        OK("5m", 300000),
        OK("1.5m", 90000),
        OK("1h", 3600000),
        OK("24h", 86400000),
        /* the largest accepted: 1e15 ms */
        OK("1000000000000", 1000000000000000ull),
        OK("1000000000000000ms", 1000000000000000ull),
        OK("277777777.7h", 999999999720000ull),
        BAD("1000000000001"),
        BAD("1000000000000001ms"),
        BAD("300000000h"),
        BAD("1e400"),
        BAD("99999999999999999999999999999999999999"),
        /* malformed */
        BAD(""),
        BAD("s"),
        BAD("ms"),
        BAD("-1"),
        BAD("-0"),
        BAD("+1"),
        BAD(" 1"),
        BAD("1 "),
        BAD("1 s"),
        BAD(".5"),
        BAD("1x"),
        BAD("1sec"),
        BAD("1d"),
        BAD("5mm"),
        BAD("1hs"),
        BAD("1ms5"),
        BAD("1.2.3"),
        BAD("inf"),
        BAD("infinity"),
        BAD("nan"),
        BAD("1,5"),
    };
    for (size_t i = 0; i < NX_ARRAY_LEN(cases); i++) {
        uint64_t v = SENTINEL;
        int rc = nx_parse_duration_ms(cases[i].in, &v);
        cr_expect_eq(rc, cases[i].rc, "'%s': rc %d, expected %d", cases[i].in, rc, cases[i].rc);
        if (cases[i].rc == 0)
            cr_expect_eq(v, cases[i].value, "'%s': %llu, expected %llu", cases[i].in,
                         (unsigned long long)v, (unsigned long long)cases[i].value);
        else
            cr_expect_eq(v, SENTINEL, "'%s': *ms written on failure", cases[i].in);
    }
    uint64_t v = SENTINEL;
    cr_expect_eq(nx_parse_duration_ms(NULL, &v), -1);
    cr_expect_eq(v, SENTINEL);
}

Test(util, parse_size)
{
    static const u64_case cases[] = {
        OK("0", 0),
        OK("1", 1),
        OK("4096", 4096),
        OK("007", 7),
        OK("8k", 8192),
        OK("8K", 8192),
        OK("8kb", 8192),
        OK("8KB", 8192),
        OK("8kB", 8192),
        OK("100M", 104857600),
        OK("100m", 104857600),
        OK("100MB", 104857600),
        OK("1g", 1073741824),
        OK("1G", 1073741824),
        OK("1gb", 1073741824),
        OK("0g", 0),
        OK("16384", 16384),
        /* edges of uint64 */
        OK("18446744073709551615", UINT64_MAX),
        OK("18014398509481983k", UINT64_MAX - 1023),
        OK("17592186044415m", UINT64_MAX - (1024ull * 1024 - 1)),
        OK("17179869183g", UINT64_MAX - (1024ull * 1024 * 1024 - 1)),
        BAD("18446744073709551616"),
        BAD("99999999999999999999999"),
        BAD("18014398509481984k"),
        BAD("17592186044416m"),
        BAD("17179869184g"),
        /* malformed */
        BAD(""),
        BAD("k"),
        BAD("kb"),
        BAD("-1"),
        BAD("+1"),
        BAD(" 1"),
        BAD("1 "),
        BAD("1 k"),
        BAD("1x"),
        BAD("1t"),
        BAD("1kk"),
        BAD("1kbb"),
        BAD("1kbx"),
        BAD("1.5k"),
        BAD("0x10"),
        BAD("1e3"),
    };
    for (size_t i = 0; i < NX_ARRAY_LEN(cases); i++) {
        uint64_t v = SENTINEL;
        int rc = nx_parse_size(cases[i].in, &v);
        cr_expect_eq(rc, cases[i].rc, "'%s': rc %d, expected %d", cases[i].in, rc, cases[i].rc);
        if (cases[i].rc == 0)
            cr_expect_eq(v, cases[i].value, "'%s': %llu, expected %llu", cases[i].in,
                         (unsigned long long)v, (unsigned long long)cases[i].value);
        else
            cr_expect_eq(v, SENTINEL, "'%s': *bytes written on failure", cases[i].in);
    }
    uint64_t v = SENTINEL;
    cr_expect_eq(nx_parse_size(NULL, &v), -1);
    cr_expect_eq(v, SENTINEL);
}

typedef struct i64_case {
    const char *in;
    size_t len; /* bytes of in to parse */
    int rc;
    int64_t value;
} i64_case;

/* clang-format off */
#define I_OK(s, v) {(s), sizeof(s) - 1, 0, (v)}
#define I_BAD(s) {(s), sizeof(s) - 1, -1, 0}
/* clang-format on */

Test(util, parse_i64)
{
    static const i64_case cases[] = {
        I_OK("0", 0),
        I_OK("1", 1),
        I_OK("42", 42),
        I_OK("000", 0),
        I_OK("0000000000000000001", 1), /* 19 characters */
        I_OK("999999999999999999", 999999999999999999ll),
        I_OK("1000000000000000000", 1000000000000000000ll),
        I_OK("9223372036854775806", INT64_MAX - 1),
        I_OK("9223372036854775807", INT64_MAX),
        I_BAD("9223372036854775808"),
        I_BAD("9999999999999999999"),
        I_BAD("18446744073709551615"),
        I_BAD("18446744073709551616"),
        I_BAD("99999999999999999999999999"),
        I_BAD(""),
        I_BAD("-1"),
        I_BAD("-0"),
        I_BAD("+1"),
        I_BAD(" 1"),
        I_BAD("1 "),
        I_BAD("12a"),
        I_BAD("a12"),
        I_BAD("1.0"),
        I_BAD("0x1"),
        /* a NUL inside the length is not a terminator */
        {"12\0003", 4, -1, 0}, /* '1' '2' NUL '3' */
        /* only len bytes are read: what follows does not matter */
        {"123abc", 3, 0, 123},
        {"9223372036854775807999", 19, 0, INT64_MAX},
        {"5", 0, -1, 0},
    };
    for (size_t i = 0; i < NX_ARRAY_LEN(cases); i++) {
        int64_t v = -12345;
        int rc = nx_parse_i64(cases[i].in, cases[i].len, &v);
        cr_expect_eq(rc, cases[i].rc, "'%.*s': rc %d, expected %d", (int)cases[i].len, cases[i].in,
                     rc, cases[i].rc);
        if (cases[i].rc == 0)
            cr_expect_eq(v, cases[i].value, "'%.*s': %lld, expected %lld", (int)cases[i].len,
                         cases[i].in, (long long)v, (long long)cases[i].value);
        else
            cr_expect_eq(v, -12345, "'%.*s': *out written on failure", (int)cases[i].len,
                         cases[i].in);
    }
}

/* Every value that fits is found again from its own decimal text. */
Test(util, parse_i64_round_trip)
{
    int64_t v = 1;
    for (int i = 0; i < 200; i++) {
        char buf[32];
        int n = snprintf(buf, sizeof(buf), "%lld", (long long)v);
        int64_t out = -1;
        cr_assert_eq(nx_parse_i64(buf, (size_t)n, &out), 0, "'%s'", buf);
        cr_assert_eq(out, v, "'%s'", buf);
        v = v > INT64_MAX / 3 ? v / 7 + 13 : v * 3 + 1;
    }
}

Test(util, now_ms_is_monotonic)
{
    uint64_t a = nx_now_ms();
    for (int i = 0; i < 1000; i++) {
        uint64_t b = nx_now_ms();
        cr_assert_geq(b, a);
        a = b;
    }
}

Test(util, xalloc)
{
    char *s = nx_xstrdup("abc");
    cr_expect_str_eq(s, "abc");
    s = nx_xrealloc(s, 100);
    cr_expect_str_eq(s, "abc");
    free(s);
    unsigned char *z = nx_xcalloc(64, 4);
    for (size_t i = 0; i < 256; i++)
        cr_assert_eq(z[i], 0);
    free(z);
    /* zero sizes still give a pointer that can be freed */
    void *m = nx_xmalloc(0);
    cr_expect_not_null(m);
    free(m);
    void *c = nx_xcalloc(0, 0);
    cr_expect_not_null(c);
    free(c);
}
