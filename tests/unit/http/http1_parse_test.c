/*
 * http1_parse_test.c - tables of request heads and chunked bodies with their expected outcome.
 *
 * Every row of the head table is also fed in pieces: each prefix of an accepted head must be
 * INCOMPLETE, and a rejected input must never turn into success or into another error as more
 * of it arrives (the connection code re-parses from the start on each read, so the answer for
 * a prefix is what a client that sends slowly gets). Chunked bodies are decoded one-shot, byte
 * by byte, split at every point, and in place; all must agree.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http1_parse.h"

#include "../../fuzz/http1_invariants.h"

#define WHOLE (-100) /* expect: the whole input is the head */

typedef struct row {
    const char *in;
    size_t len;
    int expect; /* WHOLE, a head length, NX_H1_INCOMPLETE or NX_H1_ERROR */
    int status; /* with NX_H1_ERROR */
} row;

/* clang-format off */
#define OK(s) {s, sizeof(s) - 1, WHOLE, 0}
#define HEAD(s, n) {s, sizeof(s) - 1, n, 0}
#define MORE(s) {s, sizeof(s) - 1, NX_H1_INCOMPLETE, 0}
#define BAD(s, st) {s, sizeof(s) - 1, NX_H1_ERROR, st}
/* clang-format on */

/* A request line and Host, so a row only spells out what it tests. */
#define G "GET / HTTP/1.1\r\nHost: h\r\n"
#define P "POST / HTTP/1.1\r\nHost: h\r\n"

static nx_h1_request req; /* large: keep it off the stack */
static nx_h1_error err;

static int parse(const char *s, size_t len)
{
    memset(&err, 0, sizeof err);
    return nx_h1_parse_head(s, len, NULL, &req, &err);
}

static int parse_lim(const char *s, size_t len, const nx_h1_limits *lim)
{
    memset(&err, 0, sizeof err);
    return nx_h1_parse_head(s, len, lim, &req, &err);
}

static void show(char *out, size_t outsz, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 5 < outsz; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r')
            o += (size_t)snprintf(out + o, outsz - o, "\\r");
        else if (c == '\n')
            o += (size_t)snprintf(out + o, outsz - o, "\\n");
        else if (c < 0x20 || c >= 0x7f)
            o += (size_t)snprintf(out + o, outsz - o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    out[o] = '\0';
}

/* Checks one row whole and at every split point, with the given limits. */
static void check_row_lim(const row *t, const nx_h1_limits *lim)
{
    char desc[512];
    show(desc, sizeof desc, t->in, t->len);
    int want = t->expect == WHOLE ? (int)t->len : t->expect;

    int r = parse_lim(t->in, t->len, lim);
    if (want == NX_H1_ERROR) {
        cr_assert_eq(r, NX_H1_ERROR, "expected %d, got %d for \"%s\"", t->status, r, desc);
        cr_assert_eq(err.status, t->status, "expected %d, got %d (%s) for \"%s\"", t->status,
                     err.status, err.reason, desc);
    } else {
        cr_assert_eq(r, want, "expected %d, got %d (%d %s @%zu) for \"%s\"", want, r, err.status,
                     err.reason ? err.reason : "", err.offset, desc);
    }
    const char *why = h1inv_head(t->in, t->len, lim);
    cr_assert_null(why, "invariant \"%s\" broken by \"%s\"", why, desc);

    /* Every prefix: accepted heads are INCOMPLETE before their end; errors are stable. */
    int final_status = err.status;
    size_t final_off = err.offset;
    bool failed = false;
    for (size_t k = 0; k < t->len; k++) {
        int x = parse_lim(t->in, k, lim);
        if (want > 0 && (int)k < want) {
            cr_assert_eq(x, NX_H1_INCOMPLETE, "prefix %zu of \"%s\" gave %d (%s)", k, desc, x,
                         x == NX_H1_ERROR ? err.reason : "");
        } else if (want == NX_H1_ERROR) {
            cr_assert(x == NX_H1_INCOMPLETE || x == NX_H1_ERROR, "prefix %zu of \"%s\" gave %d", k,
                      desc, x);
            if (x == NX_H1_ERROR) {
                cr_assert(err.status == final_status && err.offset == final_off,
                          "prefix %zu of \"%s\" fails with %d@%zu, the whole with %d@%zu", k, desc,
                          err.status, err.offset, final_status, final_off);
                failed = true;
            } else {
                cr_assert(!failed, "prefix %zu of \"%s\" incomplete after an error", k, desc);
            }
        } else if (want == NX_H1_INCOMPLETE) {
            cr_assert_eq(x, NX_H1_INCOMPLETE, "prefix %zu of \"%s\" gave %d", k, desc, x);
        }
    }
}

static void check_row(const row *t)
{
    check_row_lim(t, NULL);
}

static void check_rows(const row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        check_row(&rows[i]);
}

#define CHECK_ROWS(rows) check_rows(rows, sizeof(rows) / sizeof(rows[0]))

/* ---- request line ---------------------------------------------------------------------- */

static const row request_line_rows[] = {
    OK("GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
    OK("GET / HTTP/1.0\r\n\r\n"),
    OK("GET /a/b/c?x=1&y=2 HTTP/1.1\r\nHost: h\r\n\r\n"),
    OK("HEAD /x HTTP/1.0\r\n\r\n"),
    /* leading empty lines are skipped and counted (RFC 9112 §2.2) */
    OK("\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
    OK("\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
    MORE("\r"),
    MORE("\r\n"),
    MORE("\r\n\r"),
    MORE(""),
    MORE("G"),
    MORE("GET"),
    MORE("GET "),
    MORE("GET /"),
    MORE("GET / "),
    MORE("GET / H"),
    MORE("GET / HTTP/1."),
    MORE("GET / HTTP/1.1"),
    MORE("GET / HTTP/1.1\r"),
    MORE("GET / HTTP/1.1\r\n"),
    MORE("GET / HTTP/1.1\r\nHost: h\r\n"),
    MORE("GET / HTTP/1.1\r\nHost: h\r\n\r"),
    BAD("\n", 400),
    BAD("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("\r\r\n", 400),
    BAD(" GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("\tGET / HTTP/1.1\r\n", 400),
    /* exactly one SP between the parts */
    BAD("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET /  HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET /\tHTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\t\r\nHost: h\r\n\r\n", 400),
    BAD("GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    /* line ends: CRLF only */
    BAD("GET / HTTP/1.1\nHost: h\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\rHost: h\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\r\n", 400),
    BAD("GET / HTTP/1.1\n\n", 400),
    BAD("GET /\r\n\r\n", 400), /* HTTP/0.9 */
    BAD("GET\r\n\r\n", 400),
    BAD("GET / \r\n\r\n", 400),
    BAD("GET\n", 400),
};

Test(http1_head, request_line)
{
    CHECK_ROWS(request_line_rows);
}

/* Every method of the registry (and llhttp's HTTP methods) in an accepted request. */
/* clang-format off */
static const char *const known_methods[] = {
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "ACL",
    "BASELINE-CONTROL", "BIND", "CHECKIN", "CHECKOUT", "COPY", "LABEL", "LINK", "LOCK", "MERGE",
    "MKACTIVITY", "MKCALENDAR", "MKCOL", "MKREDIRECTREF", "MKWORKSPACE", "MOVE", "ORDERPATCH",
    "PRI", "PROPFIND", "PROPPATCH", "QUERY", "REBIND", "REPORT", "SEARCH", "UNBIND",
    "UNCHECKOUT", "UNLINK", "UNLOCK", "UPDATE", "UPDATEREDIRECTREF", "VERSION-CONTROL",
    "M-SEARCH", "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE", "PURGE", "SOURCE",
};
/* clang-format on */

Test(http1_head, every_known_method)
{
    char buf[256];
    for (size_t i = 0; i < sizeof known_methods / sizeof known_methods[0]; i++) {
        const char *m = known_methods[i];
        const char *target = strcmp(m, "CONNECT") == 0 ? "h:443" : "/";
        int n = snprintf(buf, sizeof buf, "%s %s HTTP/1.1\r\nHost: h\r\n\r\n", m, target);
        row t = {buf, (size_t)n, WHOLE, 0};
        check_row(&t);
        cr_assert_eq(req.method.len, strlen(m));
        cr_assert_eq(memcmp(req.method.ptr, m, req.method.len), 0);
    }
}

/* Methods are case-sensitive: every other case of a known method is unknown (501). */
Test(http1_head, method_case_variants)
{
    char buf[256], m[32];
    for (size_t i = 0; i < sizeof known_methods / sizeof known_methods[0]; i++) {
        size_t len = strlen(known_methods[i]);
        for (size_t k = 0; k < len; k++) {
            memcpy(m, known_methods[i], len + 1);
            if (m[k] < 'A' || m[k] > 'Z')
                continue;
            m[k] = (char)(m[k] + 32);
            int n = snprintf(buf, sizeof buf, "%s / HTTP/1.1\r\nHost: h\r\n\r\n", m);
            row t = {buf, (size_t)n, NX_H1_ERROR, 501};
            check_row(&t);
        }
    }
}

static const row method_rows[] = {
    BAD("FOO / HTTP/1.1\r\nHost: h\r\n\r\n", 501),
    BAD("GETS / HTTP/1.1\r\nHost: h\r\n\r\n", 501),
    BAD("GE / HTTP/1.1\r\nHost: h\r\n\r\n", 501),
    BAD("MKCOLA / HTTP/1.1\r\nHost: h\r\n\r\n", 501),
    BAD("G / HTTP/1.1\r\nHost: h\r\n\r\n", 501),
    BAD("X-CUSTOM / HTTP/1.1\r\nHost: h\r\n\r\n", 501),
    BAD("!#$%&'*+-.^_`|~ / HTTP/1.1\r\nHost: h\r\n\r\n", 501),
    /* RTSP-only methods, which llhttp takes only on an RTSP request line */
    BAD("ANNOUNCE / HTTP/1.1\r\nHost: h\r\n\r\n", 501),
    BAD("DESCRIBE / HTTP/1.1\r\nHost: h\r\n\r\n", 501),
    BAD("SETUP / HTTP/1.1\r\nHost: h\r\n\r\n", 501),
    BAD("GET_PARAMETER / HTTP/1.1\r\nHost: h\r\n\r\n", 501),
    BAD("* / HTTP/1.1\r\nHost: h\r\n\r\n", 501), /* reserved in the registry */
    /* not a token */
    BAD("GE(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GE\"T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GE:T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("G\x01T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("G\x7fT / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("G\xc3\xa9T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GE\0T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
};

Test(http1_head, methods)
{
    CHECK_ROWS(method_rows);
}

/* ---- request-target ---------------------------------------------------------------------- */

static const row target_rows[] = {
    OK("GET /a%20b HTTP/1.1\r\nHost: h\r\n\r\n"),
    OK("GET /~u/x.y-z_w HTTP/1.1\r\nHost: h\r\n\r\n"),
    OK("GET /? HTTP/1.1\r\nHost: h\r\n\r\n"),
    OK("GET /a?b?c HTTP/1.1\r\nHost: h\r\n\r\n"),
    OK("GET /a?x=|&y={}^`\\\"<> HTTP/1.1\r\nHost: h\r\n\r\n"), /* sent unencoded in the wild */
    OK("GET //double HTTP/1.1\r\nHost: h\r\n\r\n"),
    OK("GET /!$&'()*+,;=:@ HTTP/1.1\r\nHost: h\r\n\r\n"),
    /* absolute-form (RFC 9112 §3.2.2) */
    OK("GET http://example.com/x HTTP/1.1\r\nHost: h\r\n\r\n"),
    OK("GET HTTP://EXAMPLE.COM/x?y HTTP/1.1\r\nHost: h\r\n\r\n"),
    OK("GET https://a:443/p HTTP/1.1\r\nHost: h\r\n\r\n"),
    OK("GET http://a HTTP/1.1\r\nHost: h\r\n\r\n"),
    OK("GET http://a?x HTTP/1.1\r\nHost: h\r\n\r\n"),
    OK("GET http://[::1]:80/ HTTP/1.1\r\nHost: h\r\n\r\n"),
    OK("GET http://a.b.c:/ HTTP/1.1\r\nHost: h\r\n\r\n"),
    BAD("GET http://user@a/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET http://u:p@a/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET http:// HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET http:/a HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET http:a HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET ftp://a/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET mailto:a@b HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET http://a:x/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET http://a:123456/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET http://[::1/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET http://a|b/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    /* authority-form: CONNECT only, and always */
    OK("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n"),
    OK("CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: h\r\n\r\n"),
    OK("CONNECT a:1 HTTP/1.0\r\n\r\n"),
    BAD("CONNECT a HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("CONNECT a: HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("CONNECT http://a:80/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("CONNECT * HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("CONNECT u@a:443 HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET a.example:443 HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    /* asterisk-form: OPTIONS only */
    OK("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"),
    OK("OPTIONS / HTTP/1.1\r\nHost: h\r\n\r\n"),
    OK("OPTIONS http://a HTTP/1.1\r\nHost: h\r\n\r\n"),
    BAD("GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("PRI * HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("M-SEARCH * HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("OPTIONS ** HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    /* bytes that never belong in a target */
    BAD("GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET /# HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET /\x80 HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET /\xce\xb4 HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET /\xff HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET /\x0b HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET a HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET ?a HTTP/1.1\r\nHost: h\r\n\r\n", 400),
};

Test(http1_head, targets)
{
    CHECK_ROWS(target_rows);
}

/* Every byte value as the second byte of an origin-form target. */
Test(http1_head, target_bytes)
{
    char buf[64];
    for (int c = 0; c < 256; c++) {
        int n = snprintf(buf, sizeof buf, "GET /%c HTTP/1.1\r\nHost: h\r\n\r\n", 'x');
        buf[5] = (char)c;
        bool ok = c > 0x20 && c < 0x7f && c != '#';
        row t = {buf, (size_t)n, ok ? WHOLE : NX_H1_ERROR, 400};
        check_row(&t);
    }
}

/* ---- version ------------------------------------------------------------------------------ */

static const row version_rows[] = {
    OK("GET / HTTP/1.0\r\n\r\n"),
    OK("GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
    BAD("GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505),
    BAD("GET / HTTP/1.9\r\nHost: h\r\n\r\n", 505),
    BAD("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
    BAD("GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505),
    BAD("GET / HTTP/0.9\r\n\r\n", 505),
    BAD("GET / HTTP/9.9\r\n\r\n", 505),
    BAD("GET / HTTP/5.6", 505), /* known unsupported before the line ends */
    BAD("GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400),
    BAD("GET / HTTP/1.1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET / HTTP/01.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET / HTTP/1\r\nHost: h\r\n\r\n", 400),
    BAD("GET / HTTP/1.\r\nHost: h\r\n\r\n", 400),
    BAD("GET / HTTP/\r\nHost: h\r\n\r\n", 400),
    BAD("GET / HTTP\r\nHost: h\r\n\r\n", 400),
    BAD("GET / http/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET / Http/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET / HTTP 1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET / HTTP/1,1\r\nHost: h\r\n\r\n", 400),
    BAD("GET / HTTP/a.b\r\nHost: h\r\n\r\n", 400),
    BAD("GET / HTTPS/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET / ICE/1.0\r\nHost: h\r\n\r\n", 400),
    BAD("GET / RTSP/1.0\r\nHost: h\r\n\r\n", 400),
    BAD("GET / XTTP/1.1\r\nHost: h\r\n\r\n", 400),
    BAD("GET / HTTP/1.1x\r\nHost: h\r\n\r\n", 400),
};

Test(http1_head, versions)
{
    CHECK_ROWS(version_rows);
}

/* ---- field lines -------------------------------------------------------------------------- */

static const row field_rows[] = {
    OK(G "X:y\r\n\r\n"),
    OK(G "X: y\r\n\r\n"),
    OK(G "X:  \t y \t \r\n\r\n"),
    OK(G "X:\r\n\r\n"),
    OK(G "X: \t \r\n\r\n"),
    OK(G "X: a b\tc\r\n\r\n"),
    OK(G "X: \x80\xff caf\xc3\xa9\r\n\r\n"), /* obs-text */
    OK(G "!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n"),
    OK(G "X: \"quoted: value\"\r\n\r\n"),
    OK(G "X: y\r\nX: z\r\n\r\n"),
    /* whitespace around the name */
    BAD(G "X : y\r\n\r\n", 400),
    BAD(G "X\t: y\r\n\r\n", 400),
    BAD(G "X y: z\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\n\tHost: h\r\n\r\n", 400),
    BAD(G "X: y\r\n z\r\n\r\n", 400), /* obs-fold */
    BAD(G "X: y\r\n\tz\r\n\r\n", 400),
    BAD(G "X: y\r\n \r\n\r\n", 400),
    BAD(G "X:\r\n y\r\n\r\n", 400),
    /* names */
    BAD(G ": y\r\n\r\n", 400),
    BAD(G "X\r\n\r\n", 400),
    BAD(G "X\r\nY: z\r\n\r\n", 400),
    BAD(G "X(: y\r\n\r\n", 400),
    BAD(G "X\": y\r\n\r\n", 400),
    BAD(G "X/: y\r\n\r\n", 400),
    BAD(G "X@: y\r\n\r\n", 400),
    BAD(G "[X]: y\r\n\r\n", 400),
    BAD(G "X\x01: y\r\n\r\n", 400),
    BAD(G "X\x7f: y\r\n\r\n", 400),
    BAD(G "\xc3\xa9: y\r\n\r\n", 400),
    BAD(G "X\0: y\r\n\r\n", 400),
    /* bare CR and LF anywhere */
    BAD(G "X: a\rb\r\n\r\n", 400),
    BAD(G "X: a\nb\r\n\r\n", 400),
    BAD(G "X: a\n\r\n", 400),
    BAD(G "X: a\r\r\n\r\n", 400),
    BAD(G "X: a\r\n\n", 400),
    BAD(G "X: a\r\n\r\r", 400),
    BAD(G "X: a\r\n\rX", 400),
    BAD(G "\n", 400),
    BAD(G "\r\r\n", 400),
    BAD(G "X\r: y\r\n\r\n", 400),
    BAD(G "X:\ny\r\n\r\n", 400),
    BAD(G "X:\ry\r\n\r\n", 400),
    /* NUL and other controls in values */
    BAD(G "X: a\0b\r\n\r\n", 400),
    BAD(G "X: a\x01\r\n\r\n", 400),
    BAD(G "X: \x0b\r\n\r\n", 400),
    BAD(G "X: \x0c\r\n\r\n", 400),
    BAD(G "X: a\x1b[31m\r\n\r\n", 400),
    BAD(G "X: a\x7f\r\n\r\n", 400),
    MORE(G "X"),
    MORE(G "X:"),
    MORE(G "X: y"),
    MORE(G "X: y\r"),
    MORE(G "X: y\r\n"),
    MORE(G "X: y\r\n\r"),
};

Test(http1_head, field_lines)
{
    CHECK_ROWS(field_rows);
}

/* Every byte value inside a header value and inside a header name. */
Test(http1_head, field_bytes)
{
    char buf[64];
    size_t gl = sizeof(G) - 1;
    for (int c = 0; c < 256; c++) {
        memcpy(buf, G "X: a?b\r\n\r\n", gl + 11);
        buf[gl + 4] = (char)c;
        bool ok = c == '\t' || (c >= 0x20 && c != 0x7f);
        row t = {buf, gl + 10, ok ? WHOLE : NX_H1_ERROR, 400};
        check_row(&t);

        memcpy(buf, G "X?Y: v\r\n\r\n", gl + 11);
        buf[gl + 1] = (char)c;
        ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
             (c && strchr("!#$%&'*+-.^_`|~", c));
        row t2 = {buf, gl + 10, ok ? WHOLE : NX_H1_ERROR, 400};
        if (c == ':') /* "X:Y: v" is field X with value "Y: v" */
            t2.expect = WHOLE;
        check_row(&t2);
    }
}

Test(http1_head, field_values_trimmed)
{
    static const char in[] = G "A: \t one two \t\r\nB:\r\nC:x\r\nD:  \r\n\r\n";
    cr_assert_eq(parse(in, sizeof in - 1), (int)sizeof in - 1);
    cr_assert_eq(req.nheaders, 5);
    const char *want[][2] = {{"Host", "h"}, {"A", "one two"}, {"B", ""}, {"C", "x"}, {"D", ""}};
    for (size_t i = 0; i < 5; i++) {
        cr_assert_eq(req.headers[i].name.len, strlen(want[i][0]));
        cr_assert_eq(memcmp(req.headers[i].name.ptr, want[i][0], req.headers[i].name.len), 0);
        cr_assert_eq(req.headers[i].value.len, strlen(want[i][1]), "header %zu", i);
        cr_assert_eq(memcmp(req.headers[i].value.ptr, want[i][1], req.headers[i].value.len), 0);
        /* spans point into the input, even empty ones */
        cr_assert(req.headers[i].value.ptr >= in && req.headers[i].value.ptr <= in + sizeof in);
    }
}

/* ---- Host (RFC 9112 §3.2) ------------------------------------------------------------------ */

static const row host_rows[] = {
    OK("GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    OK("GET / HTTP/1.1\r\nhost: a\r\n\r\n"),
    OK("GET / HTTP/1.1\r\nHOST: a\r\n\r\n"),
    OK("GET / HTTP/1.1\r\nHost: a.example:8080\r\n\r\n"),
    OK("GET / HTTP/1.1\r\nHost: a:\r\n\r\n"),
    OK("GET / HTTP/1.1\r\nHost: a:65535\r\n\r\n"),
    OK("GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n"),
    OK("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"),
    OK("GET / HTTP/1.1\r\nHost: [::ffff:1.2.3.4]\r\n\r\n"),
    OK("GET / HTTP/1.1\r\nHost: 1.2.3.4\r\n\r\n"),
    OK("GET / HTTP/1.1\r\nHost: a%2Db\r\n\r\n"),
    OK("GET / HTTP/1.1\r\nHost: 0.0.0.0=5000\r\n\r\n"),
    OK("GET / HTTP/1.1\r\nHost: xn--bcher-kva.example\r\n\r\n"),
    OK("GET / HTTP/1.1\r\nHost: \t a \t\r\n\r\n"),
    OK("GET / HTTP/1.1\r\nX: 1\r\nHost: a\r\nY: 2\r\n\r\n"),
    OK("GET / HTTP/1.0\r\n\r\n"),
    OK("GET / HTTP/1.0\r\nHost: a\r\n\r\n"),
    BAD("GET / HTTP/1.1\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nX: 1\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400),
    BAD("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nHost:\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nHost:  \r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    OK("GET / HTTP/1.1\r\nHost: a,b\r\n\r\n"), /* sub-delims are reg-name bytes (RFC 3986) */
    BAD("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nHost: []\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n", 400),
    OK("GET / HTTP/1.1\r\nDate: x\r\nHost: a\r\nHOSTS: b\r\n\r\n"),
    BAD("GET / HTTP/1.1\r\nHost: a%2\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    MORE("GET / HTTP/1.1\r\nHost: a"),
};

Test(http1_head, host)
{
    CHECK_ROWS(host_rows);
    static const char abs[] = "GET http://b.example:81/p HTTP/1.1\r\nHost: a\r\n\r\n";
    cr_assert_gt(parse(abs, sizeof abs - 1), 0);
    /* RFC 9112 §3.2.2: the authority of an absolute-form target replaces Host. */
    cr_assert_eq(req.host.len, 12);
    cr_assert_eq(memcmp(req.host.ptr, "b.example:81", 12), 0);
    cr_assert_eq(req.path.len, 2);
    cr_assert_eq(memcmp(req.path.ptr, "/p", 2), 0);
}

/* ---- Content-Length -------------------------------------------------------------------------- */

typedef struct cl_row {
    const char *fields; /* field lines after the request line and Host */
    int status;         /* 0: accepted */
    int64_t cl;
} cl_row;

static const cl_row cl_rows[] = {
    {"Content-Length: 0\r\n", 0, 0},
    {"Content-Length: 5\r\n", 0, 5},
    {"Content-Length: 003\r\n", 0, 3},
    {"Content-Length: 0000000000000000000000000000007\r\n", 0, 7},
    {"content-length: 5\r\n", 0, 5},
    {"CONTENT-LENGTH: 5\r\n", 0, 5},
    {"Content-Length:5\r\n", 0, 5},
    {"Content-Length: \t5\t \r\n", 0, 5},
    {"Content-Length: 5, 5\r\n", 0, 5},
    {"Content-Length: 5,5\r\n", 0, 5},
    {"Content-Length: 5 ,\t5 , 5\r\n", 0, 5},
    {"Content-Length: 5\r\nContent-Length: 5\r\n", 0, 5},
    {"Content-Length: 5\r\nContent-Length: 005\r\n", 0, 5},
    {"Content-Length: 5\r\nX: y\r\ncontent-length: 5, 5\r\n", 0, 5},
    {"Content-Length: 9223372036854775807\r\n", 0, INT64_MAX},
    {"Content-Length: 09223372036854775807\r\n", 0, INT64_MAX},
    {"Content-Length: 9223372036854775808\r\n", 400, 0},
    {"Content-Length: 18446744073709551616\r\n", 400, 0},
    {"Content-Length: 1000000000000000000000\r\n", 400, 0},
    {"Content-Length: 5, 6\r\n", 400, 0},
    {"Content-Length: 5\r\nContent-Length: 6\r\n", 400, 0},
    {"Content-Length: 0\r\nContent-Length: 00\r\nContent-Length: 1\r\n", 400, 0},
    {"Content-Length:\r\n", 400, 0},
    {"Content-Length: \r\n", 400, 0},
    {"Content-Length: ,\r\n", 400, 0},
    {"Content-Length: 5,\r\n", 400, 0},
    {"Content-Length: ,5\r\n", 400, 0},
    {"Content-Length: 5,,5\r\n", 400, 0},
    {"Content-Length: 5, ,5\r\n", 400, 0},
    {"Content-Length: -5\r\n", 400, 0},
    {"Content-Length: +5\r\n", 400, 0},
    {"Content-Length: -0\r\n", 400, 0},
    {"Content-Length: 5 5\r\n", 400, 0},
    {"Content-Length: 4 2\r\n", 400, 0},
    {"Content-Length: 0x5\r\n", 400, 0},
    {"Content-Length: 5.0\r\n", 400, 0},
    {"Content-Length: 5e3\r\n", 400, 0},
    {"Content-Length: five\r\n", 400, 0},
    {"Content-Length: \"5\"\r\n", 400, 0},
    {"Content-Length: 5;x\r\n", 400, 0},
    {"Content-Length: \xd9\xa5\r\n", 400, 0}, /* a non-ASCII digit */
    {"Content-Length: 5\x0b\r\n", 400, 0},
    {"Content-Length : 5\r\n", 400, 0},
    {"Content-Length\t: 5\r\n", 400, 0},
    {" Content-Length: 5\r\n", 400, 0},
    {"X: 1\r\n Content-Length: 5\r\n", 400, 0},
    {"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400, 0},
    {"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", 400, 0},
    {"Content-Length: 5\r\ntransfer-encoding: identity\r\n", 400, 0},
    /* not Content-Length at all, so no framing: */
    {"Content_Length: 5\r\n", 0, -1},
    {"Content-Lengths: 5\r\n", 0, -1},
    {"X-Content-Length: 5\r\n", 0, -1},
};

Test(http1_head, content_length)
{
    char buf[512];
    for (size_t i = 0; i < sizeof cl_rows / sizeof cl_rows[0]; i++) {
        int n = snprintf(buf, sizeof buf, P "%s\r\n", cl_rows[i].fields);
        row t = {buf, (size_t)n, cl_rows[i].status ? NX_H1_ERROR : WHOLE, cl_rows[i].status};
        check_row(&t);
        if (cl_rows[i].status == 0) {
            cr_assert_eq(parse(buf, (size_t)n), n);
            cr_assert_eq(req.content_length, cl_rows[i].cl, "row %zu: %lld", i,
                         (long long)req.content_length);
            cr_assert(!req.chunked);
        }
    }
    static const char none[] = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    cr_assert_gt(parse(none, sizeof none - 1), 0);
    cr_assert_eq(req.content_length, -1);
}

/* ---- Transfer-Encoding: the smuggling vectors --------------------------------------------- */

typedef struct te_row {
    const char *fields;
    int version; /* 11 or 10 */
    int status;  /* 0: accepted as chunked, 1: accepted and not chunked */
} te_row;

static const te_row te_rows[] = {
    {"Transfer-Encoding: chunked\r\n", 11, 0},
    {"Transfer-Encoding: Chunked\r\n", 11, 0},
    {"Transfer-Encoding: CHUNKED\r\n", 11, 0},
    {"transfer-encoding: chunked\r\n", 11, 0},
    {"TRANSFER-ENCODING: chunked\r\n", 11, 0},
    {"Transfer-Encoding:chunked\r\n", 11, 0},
    {"Transfer-Encoding:   chunked   \r\n", 11, 0},
    /* HTAB is OWS, but parsers disagree on it in this field: refused */
    {"Transfer-Encoding: \t chunked \t\r\n", 11, 400},
    {"Transfer-Encoding:\tchunked\r\n", 11, 400},
    {"Transfer-Encoding: chunked\t\r\n", 11, 400},
    {"Transfer-Encoding: gzip,\tchunked\r\n", 11, 400},
    {"Transfer-Encoding: gzip, chunked\r\n", 11, 501},
    {"Transfer-Encoding: gzip,chunked\r\n", 11, 501},
    {"Transfer-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n", 11, 501},
    {"Transfer-Encoding: gzip;q=1, chunked\r\n", 11, 501},
    {"Transfer-Encoding: gzip ; level = 9 , chunked\r\n", 11, 501},
    {"Transfer-Encoding: gzip;x=\"a, chunked\", chunked\r\n", 11, 501},
    {"Transfer-Encoding: gzip;x=\"a\\\"b\", chunked\r\n", 11, 501},
    {"Transfer-Encoding: identity, chunked\r\n", 11, 501},
    /* chunked not last, or not exactly "chunked" */
    {"Transfer-Encoding: identity\r\n", 11, 400},
    {"Transfer-Encoding: gzip\r\n", 11, 400},
    {"Transfer-Encoding: pigeons\r\n", 11, 400},
    {"Transfer-Encoding: chunked, identity\r\n", 11, 400},
    {"Transfer-Encoding: chunked, gzip\r\n", 11, 400},
    {"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n", 11, 400},
    {"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", 11, 400},
    {"Transfer-Encoding: xchunked\r\n", 11, 400},
    {"Transfer-Encoding: chunkedx\r\n", 11, 400},
    {"Transfer-Encoding: chunked-false\r\n", 11, 400},
    {"Transfer-Encoding: chunkedchunked\r\n", 11, 400},
    {"Transfer-Encoding: chunk\r\n", 11, 400},
    {"Transfer-Encoding: chu nked\r\n", 11, 400},
    {"Transfer-Encoding: \"chunked\"\r\n", 11, 400},
    {"Transfer-Encoding: chunked;q=1\r\n", 11, 400},
    {"Transfer-Encoding: chunked ;q=1\r\n", 11, 400},
    {"Transfer-Encoding: chunked\x0b\r\n", 11, 400},
    {"Transfer-Encoding: \013chunked\r\n", 11, 400},
    {"Transfer-Encoding: chunked\x0c\r\n", 11, 400},
    {"Transfer-Encoding: ch\xc3\xbcnked\r\n", 11, 400},
    /* chunked twice */
    {"Transfer-Encoding: chunked, chunked\r\n", 11, 400},
    {"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", 11, 400},
    {"Transfer-Encoding: chunked, gzip, chunked\r\n", 11, 400},
    /* empty elements and empty fields */
    {"Transfer-Encoding:\r\n", 11, 400},
    {"Transfer-Encoding: \r\n", 11, 400},
    {"Transfer-Encoding: ,\r\n", 11, 400},
    {"Transfer-Encoding: chunked,\r\n", 11, 400},
    {"Transfer-Encoding: , chunked\r\n", 11, 400},
    {"Transfer-Encoding: gzip,,chunked\r\n", 11, 400},
    {"Transfer-Encoding:\r\nTransfer-Encoding: chunked\r\n", 11, 400},
    {"Transfer-Encoding: chunked\r\nTransfer-Encoding:\r\n", 11, 400},
    {"Transfer-Encoding: gzip;, chunked\r\n", 11, 400},
    {"Transfer-Encoding: gzip;q, chunked\r\n", 11, 400},
    {"Transfer-Encoding: gzip;q=\"a, chunked\r\n", 11, 400},
    {"Transfer-Encoding: gzip;q=\"a\\\x01\", chunked\r\n", 11, 400},
    {"Transfer-Encoding: gzip;q=\"a\x7f\", chunked\r\n", 11, 400},
    {"Transfer-Encoding: gzip;q=\"a\\\r\n", 11, 400},
    /* whitespace and folding around the name */
    {"Transfer-Encoding : chunked\r\n", 11, 400},
    {"Transfer-Encoding\t: chunked\r\n", 11, 400},
    {" Transfer-Encoding: chunked\r\n", 11, 400},
    {"X: 1\r\n Transfer-Encoding: chunked\r\n", 11, 400},
    {"Transfer-Encoding:\r\n chunked\r\n", 11, 400},
    {"Transfer-Encoding: chunked\r\n  abc\r\n", 11, 400},
    {"Transfer-Encoding\r\n: chunked\r\n", 11, 400},
    /* with Content-Length, in either order */
    {"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n", 11, 400},
    {"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", 11, 400},
    {"Content-Length: 10\r\nTransfer-Encoding:\r\n", 11, 400},
    /* in HTTP/1.0 (RFC 9112 §6.1) */
    {"Transfer-Encoding: chunked\r\n", 10, 400},
    {"Transfer-Encoding: identity\r\n", 10, 400},
    /* look-alikes that are other fields */
    {"Transfer_Encoding: chunked\r\n", 11, 1},
    {"Transfer-Encodings: chunked\r\n", 11, 1},
    {"X-Transfer-Encoding: chunked\r\n", 11, 1},
    {"TE: chunked\r\n", 11, 1},
};

Test(http1_head, transfer_encoding)
{
    char buf[512];
    for (size_t i = 0; i < sizeof te_rows / sizeof te_rows[0]; i++) {
        const te_row *x = &te_rows[i];
        int n = snprintf(buf, sizeof buf, "POST / HTTP/1.%d\r\nHost: h\r\n%s\r\n",
                         x->version == 11 ? 1 : 0, x->fields);
        bool ok = x->status == 0 || x->status == 1;
        row t = {buf, (size_t)n, ok ? WHOLE : NX_H1_ERROR, x->status};
        check_row(&t);
        if (ok) {
            cr_assert_eq(parse(buf, (size_t)n), n);
            cr_assert_eq(req.chunked, x->status == 0, "row %zu", i);
            cr_assert_eq(req.content_length, -1);
        }
    }
}

Test(http1_head, connect_without_body)
{
    static const row rows[] = {
        BAD("CONNECT a:443 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 400),
        BAD("CONNECT a:443 HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n", 400),
        BAD("CONNECT a:443 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        OK("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n"),
    };
    CHECK_ROWS(rows);
}

/* ---- Connection, Upgrade, Expect ---------------------------------------------------------- */

typedef struct conn_row {
    const char *head;
    bool keep_alive, upgrade, expect;
} conn_row;

static const conn_row conn_rows[] = {
    {G "\r\n", true, false, false},
    {"GET / HTTP/1.0\r\n\r\n", false, false, false},
    {G "Connection: close\r\n\r\n", false, false, false},
    {G "Connection: Close\r\n\r\n", false, false, false},
    {G "Connection: CLOSE \t\r\n\r\n", false, false, false},
    {G "Connection: keep-alive\r\n\r\n", true, false, false},
    {G "Connection: close, keep-alive\r\n\r\n", false, false, false},
    {G "Connection: keep-alive, close\r\n\r\n", false, false, false},
    {G "Connection: keep-alive\r\nConnection: close\r\n\r\n", false, false, false},
    {G "Connection: foo,close\r\n\r\n", false, false, false},
    {G "Connection: , ,close,,\r\n\r\n", false, false, false},
    {G "Connection: close , keep-alive\r\n\r\n", false, false, false},
    {G "Expect: 100-continue , foo\r\n\r\n", true, false, true},
    {G "Connection: closed\r\n\r\n", true, false, false},
    {G "Connection: xclose\r\n\r\n", true, false, false},
    {G "Connection: close x\r\n\r\n", true, false, false},
    {G "Connection:\r\n\r\n", true, false, false},
    {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true, false, false},
    {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true, false, false},
    {"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false, false, false},
    {"GET / HTTP/1.0\r\nConnection: keepalive\r\n\r\n", false, false, false},
    {G "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n", true, true, false},
    {G "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n", true, true, false},
    {G "Connection: keep-alive, Upgrade\r\nUpgrade: h2c\r\n\r\n", true, true, false},
    {G "Connection: close, upgrade\r\nUpgrade: websocket\r\n\r\n", false, true, false},
    {G "Connection: upgrade\r\n\r\n", true, false, false},
    {G "Connection: upgrade\r\nUpgrade:\r\n\r\n", true, false, false},
    {G "Upgrade: websocket\r\n\r\n", true, false, false},
    {"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", false, false, false},
    {G "Expect: 100-continue\r\n\r\n", true, false, true},
    {G "Expect: 100-Continue\r\n\r\n", true, false, true},
    {G "Expect:  100-continue \r\n\r\n", true, false, true},
    {G "Expect: foo, 100-continue\r\n\r\n", true, false, true},
    {G "Expect: 100-continued\r\n\r\n", true, false, false},
    {G "Expect: 200-ok\r\n\r\n", true, false, false},
    {"GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", false, false, false},
};

Test(http1_head, connection_semantics)
{
    for (size_t i = 0; i < sizeof conn_rows / sizeof conn_rows[0]; i++) {
        const conn_row *x = &conn_rows[i];
        size_t len = strlen(x->head);
        row t = {x->head, len, WHOLE, 0};
        check_row(&t);
        cr_assert_eq(parse(x->head, len), (int)len);
        cr_assert_eq(req.keep_alive, x->keep_alive, "row %zu keep_alive", i);
        cr_assert_eq(req.upgrade, x->upgrade, "row %zu upgrade", i);
        cr_assert_eq(req.expect_continue, x->expect, "row %zu expect", i);
    }
}

/* ---- what a parsed request holds ---------------------------------------------------------- */

static void assert_str(nx_str s, const char *want)
{
    cr_assert_eq(s.len, strlen(want), "\"%.*s\" != \"%s\"", (int)s.len, s.ptr, want);
    cr_assert_eq(memcmp(s.ptr, want, s.len), 0, "\"%.*s\" != \"%s\"", (int)s.len, s.ptr, want);
}

Test(http1_head, fields_of_a_request)
{
    static const char in[] = "\r\nPOST /a/b?x=1&y=%20 HTTP/1.1\r\nHost: example.com:8080\r\n"
                             "Content-Type: text/plain\r\nContent-Length: 11\r\n"
                             "Expect: 100-continue\r\n\r\nhello world";
    int r = parse(in, sizeof in - 1);
    cr_assert_eq(r, (int)(sizeof in - 1 - 11));
    assert_str(req.method, "POST");
    assert_str(req.target, "/a/b?x=1&y=%20");
    assert_str(req.path, "/a/b");
    assert_str(req.query, "x=1&y=%20");
    assert_str(req.host, "example.com:8080");
    cr_assert_eq(req.version, 11);
    cr_assert_eq(req.nheaders, 4);
    assert_str(req.headers[1].name, "Content-Type");
    assert_str(req.headers[1].value, "text/plain");
    cr_assert_eq(req.content_length, 11);
    cr_assert(!req.chunked && req.keep_alive && req.expect_continue && !req.upgrade);

    static const char star[] = "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n";
    cr_assert_gt(parse(star, sizeof star - 1), 0);
    assert_str(req.path, "*");
    assert_str(req.query, "");

    static const char conn[] = "CONNECT h.example:443 HTTP/1.1\r\nHost: h.example:443\r\n\r\n";
    cr_assert_gt(parse(conn, sizeof conn - 1), 0);
    assert_str(req.path, "h.example:443");
    assert_str(req.target, "h.example:443");

    static const char noq[] = "GET /x? HTTP/1.0\r\n\r\n";
    cr_assert_gt(parse(noq, sizeof noq - 1), 0);
    assert_str(req.path, "/x");
    assert_str(req.query, "");
    assert_str(req.host, "");
    cr_assert(req.host.ptr != NULL);
    cr_assert_eq(req.version, 10);
    cr_assert(!req.keep_alive);

    static const char abs[] = "GET https://h.example HTTP/1.1\r\nHost: h.example\r\n\r\n";
    cr_assert_gt(parse(abs, sizeof abs - 1), 0);
    assert_str(req.path, ""); /* an empty path in absolute-form means "/" */
    assert_str(req.host, "h.example");

    static const char absq[] = "GET http://h?q=1 HTTP/1.1\r\nHost: h\r\n\r\n";
    cr_assert_gt(parse(absq, sizeof absq - 1), 0);
    assert_str(req.path, "");
    assert_str(req.query, "q=1");
}

Test(http1_head, error_details)
{
    static const char in[] = "GET / HTTP/1.1\r\nHost: h\r\nX : y\r\n\r\n";
    cr_assert_eq(parse(in, sizeof in - 1), NX_H1_ERROR);
    cr_assert_eq(err.status, 400);
    cr_assert_eq(err.offset, 26); /* the space before the colon */
    cr_assert_str_eq(err.reason, "whitespace before colon");

    static const char te[] =
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
    cr_assert_eq(parse(te, sizeof te - 1), NX_H1_ERROR);
    cr_assert_eq(err.status, 501);
    cr_assert_eq(err.offset, 26); /* the Transfer-Encoding line */

    /* A NULL err is allowed. */
    cr_assert_eq(nx_h1_parse_head(in, sizeof in - 1, NULL, &req, NULL), NX_H1_ERROR);
}

/* A pipelined request after the head is not part of it. */
Test(http1_head, bytes_after_the_head)
{
    static const char in[] = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
    int r = parse(in, sizeof in - 1);
    cr_assert_eq(r, (int)(sizeof in - 1) / 2);
    assert_str(req.path, "/1");
    r = parse(in + r, sizeof in - 1 - (size_t)r);
    cr_assert_eq(r, (int)(sizeof in - 1) / 2);
    assert_str(req.path, "/2");
}

/* ---- limits ---------------------------------------------------------------------------------- */

static nx_h1_limits big_limits(void)
{
    nx_h1_limits l = {1 << 20, 1 << 20, 1 << 22, NX_H1_MAX_HEADERS};
    return l;
}

/*
 * For a request whose line or field `len` is exactly `lim`, checks acceptance at the limit and
 * rejection one below it, at every prefix: a prefix already holding more content than the limit
 * must be an error even though the line has not ended.
 */
static void check_line_limit(const char *in, size_t inlen, size_t line_start, size_t line_len,
                             bool request_line)
{
    nx_h1_limits l = big_limits();
    size_t *lim = request_line ? &l.max_request_line : &l.max_field;
    int status = request_line ? 414 : 431;

    *lim = line_len;
    cr_assert_eq(parse_lim(in, inlen, &l), (int)inlen, "at the limit: %s", err.reason);
    for (size_t k = 0; k <= inlen; k++)
        cr_assert_eq(parse_lim(in, k, &l), k == inlen ? (int)inlen : NX_H1_INCOMPLETE);

    *lim = line_len - 1;
    cr_assert_eq(parse_lim(in, inlen, &l), NX_H1_ERROR);
    cr_assert_eq(err.status, status, "%d %s", err.status, err.reason);
    for (size_t k = 0; k <= inlen; k++) {
        int r = parse_lim(in, k, &l);
        if (k > line_start + line_len - 1) {
            cr_assert_eq(r, NX_H1_ERROR, "prefix %zu over the limit gave %d", k, r);
            cr_assert_eq(err.status, status);
            cr_assert_eq(err.offset, line_start + line_len - 1);
        } else {
            cr_assert_eq(r, NX_H1_INCOMPLETE, "prefix %zu gave %d", k, r);
        }
    }
}

Test(http1_head, request_line_limit)
{
    char buf[600];
    /* Moves the limit across every part of the line: method, target, version. */
    for (size_t k = 0; k < 40; k++) {
        int n = snprintf(buf, sizeof buf, "\r\nGET /%.*s HTTP/1.1\r\nHost: h\r\n\r\n", (int)k,
                         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        size_t line_len = 4 + 1 + k + 1 + 8;
        check_line_limit(buf, (size_t)n, 2, line_len, true);
        for (size_t lim = 1; lim < line_len; lim++) {
            nx_h1_limits l = big_limits();
            l.max_request_line = lim;
            cr_assert_eq(parse_lim(buf, (size_t)n, &l), NX_H1_ERROR);
            cr_assert_eq(err.status, 414);
            cr_assert_eq(err.offset, 2 + lim);
        }
    }
}

Test(http1_head, field_limit)
{
    char buf[600];
    for (size_t k = 0; k < 40; k++) {
        int n = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\nX-Long: %.*s\r\n\r\n",
                         (int)k, "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv");
        check_line_limit(buf, (size_t)n, 25, 8 + k, false);
    }
    /* the limit applies to the Host line as well, and to the name */
    static const char in[] = "GET / HTTP/1.1\r\nHost: h\r\nXXXXXXXXXXXXXXXXXXXX: v\r\n\r\n";
    nx_h1_limits l = big_limits();
    l.max_field = 10;
    cr_assert_eq(parse_lim(in, sizeof in - 1, &l), NX_H1_ERROR);
    cr_assert_eq(err.status, 431);
    l.max_field = 6;
    cr_assert_eq(parse_lim(in, sizeof in - 1, &l), NX_H1_ERROR);
    cr_assert_eq(err.status, 431);
    cr_assert_eq(err.offset, 22);
}

Test(http1_head, head_limit)
{
    static const char in[] = "\r\nGET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
    size_t len = sizeof in - 1;
    nx_h1_limits l = big_limits();

    l.max_head = len;
    cr_assert_eq(parse_lim(in, len, &l), (int)len);
    for (size_t k = 0; k < len; k++)
        cr_assert_eq(parse_lim(in, k, &l), NX_H1_INCOMPLETE);

    l.max_head = len - 1;
    for (size_t k = 0; k <= len; k++) {
        int r = parse_lim(in, k, &l);
        if (k > len - 1) {
            cr_assert_eq(r, NX_H1_ERROR);
            cr_assert_eq(err.status, 431);
            cr_assert_eq(err.offset, len - 1);
        } else {
            cr_assert_eq(r, NX_H1_INCOMPLETE, "prefix %zu", k);
        }
    }
    /* an incomplete head that is already too large fails before it ends */
    char big[2048];
    memset(big, 'a', sizeof big);
    memcpy(big, "GET / HTTP/1.1\r\nHost: h\r\nX: ", 28);
    l.max_head = 1000;
    cr_assert_eq(parse_lim(big, sizeof big, &l), NX_H1_ERROR);
    cr_assert_eq(err.status, 431);
    cr_assert_eq(parse_lim(big, 1000, &l), NX_H1_INCOMPLETE);
    cr_assert_eq(parse_lim(big, 1001, &l), NX_H1_ERROR);
}

Test(http1_head, header_count_limit)
{
    char buf[8192];
    nx_h1_limits l = big_limits();
    for (size_t max = 1; max <= NX_H1_MAX_HEADERS; max += 33) {
        l.max_headers = max;
        /* max fields (Host + max-1 others): accepted; one more: 431, before the head ends */
        size_t o = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\n");
        for (size_t i = 1; i < max; i++)
            o += (size_t)snprintf(buf + o, sizeof buf - o, "X%zu: %zu\r\n", i, i);
        memcpy(buf + o, "\r\n", 2);
        cr_assert_eq(parse_lim(buf, o + 2, &l), (int)(o + 2), "max %zu: %s", max, err.reason);
        cr_assert_eq(req.nheaders, max);
        memcpy(buf + o, "Y", 1);
        cr_assert_eq(parse_lim(buf, o + 1, &l), NX_H1_ERROR);
        cr_assert_eq(err.status, 431);
        cr_assert_eq(parse_lim(buf, o, &l), NX_H1_INCOMPLETE);
    }
    /* the cap holds even when the limit asks for more */
    size_t o = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (size_t i = 1; i <= NX_H1_MAX_HEADERS; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "X: %zu\r\n", i);
    memcpy(buf + o, "\r\n", 2);
    l.max_headers = 1000;
    cr_assert_eq(parse_lim(buf, o + 2, &l), NX_H1_ERROR);
    cr_assert_eq(err.status, 431);
}

Test(http1_head, default_limits)
{
    nx_h1_limits l;
    nx_h1_limits_default(&l);
    cr_assert_eq(l.max_request_line, 8192);
    cr_assert_eq(l.max_field, 8192);
    cr_assert_eq(l.max_head, 32768);
    cr_assert_eq(l.max_headers, NX_H1_MAX_HEADERS);

    /* an 8192-byte request line passes with defaults (NULL limits), 8193 does not */
    static char buf[9000];
    for (size_t extra = 0; extra <= 1; extra++) {
        size_t tlen = 8192 - 4 - 9 + extra; /* "GET " target " HTTP/1.1" */
        memcpy(buf, "GET /", 5);
        memset(buf + 5, 'a', tlen - 1);
        size_t o = 4 + tlen;
        o += (size_t)snprintf(buf + o, sizeof buf - o, " HTTP/1.1\r\nHost: h\r\n\r\n");
        int r = parse(buf, o);
        if (extra == 0) {
            cr_assert_eq(r, (int)o, "%s", err.reason);
        } else {
            cr_assert_eq(r, NX_H1_ERROR);
            cr_assert_eq(err.status, 414);
            cr_assert_eq(parse(buf, 8193), NX_H1_ERROR); /* before the line ends */
        }
    }
}

/* ---- short reads: a head delivered in pieces ---------------------------------------------- */

static const char browser[] =
    "GET /static/app.js?v=3 HTTP/1.1\r\n"
    "Host: www.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    "Accept: */*\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Referer: https://www.example.com/\r\n"
    "Connection: keep-alive\r\n"
    "Cookie: session=abc123; theme=dark\r\n"
    "\r\n";

Test(http1_head, every_split_point)
{
    size_t len = sizeof browser - 1;
    for (size_t k = 0; k < len; k++)
        cr_assert_eq(parse(browser, k), NX_H1_INCOMPLETE, "prefix %zu", k);
    cr_assert_eq(parse(browser, len), (int)len);
    cr_assert_eq(req.nheaders, 8);
}

/* Reads of every size up to 64 bytes, re-parsing from the start after each, as the
 * connection code does; the answer is INCOMPLETE until the last read, then the same head. */
Test(http1_head, short_reads)
{
    size_t len = sizeof browser - 1;
    for (size_t step = 1; step <= 64; step++) {
        size_t have = 0;
        int r = NX_H1_INCOMPLETE;
        while (r == NX_H1_INCOMPLETE && have < len) {
            have = have + step < len ? have + step : len;
            r = parse(browser, have);
        }
        cr_assert_eq(r, (int)len, "step %zu", step);
        cr_assert_eq(have, len);
        assert_str(req.path, "/static/app.js");
    }
}

/* ---- chunked bodies ------------------------------------------------------------------------- */

typedef struct ck_row {
    const char *in;
    size_t len;
    int expect;       /* NX_OK, NX_H1_INCOMPLETE or NX_H1_ERROR */
    const char *body; /* expected payload (for NX_OK and NX_H1_INCOMPLETE) */
    size_t blen;
    size_t used; /* bytes consumed for NX_OK; 0: all */
} ck_row;

/* clang-format off */
#define CK_OK(s, b) {s, sizeof(s) - 1, NX_OK, b, sizeof(b) - 1, 0}
#define CK_OK_AT(s, b, used) {s, sizeof(s) - 1, NX_OK, b, sizeof(b) - 1, used}
#define CK_MORE(s, b) {s, sizeof(s) - 1, NX_H1_INCOMPLETE, b, sizeof(b) - 1, 0}
#define CK_BAD(s) {s, sizeof(s) - 1, NX_H1_ERROR, NULL, 0, 0}
/* clang-format on */

static const ck_row ck_rows[] = {
    CK_OK("0\r\n\r\n", ""),
    CK_OK("000\r\n\r\n", ""),
    CK_OK("5\r\nhello\r\n0\r\n\r\n", "hello"),
    CK_OK("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world"),
    CK_OK("a\r\n0123456789\r\n0\r\n\r\n", "0123456789"),
    CK_OK("A\r\n0123456789\r\n0\r\n\r\n", "0123456789"),
    CK_OK("0005\r\nhello\r\n0\r\n\r\n", "hello"),
    CK_OK("1\r\n\r\r\n1\r\n\n\r\n0\r\n\r\n", "\r\n"), /* CR and LF as data */
    CK_OK("3\r\n\0\1\2\r\n0\r\n\r\n", "\0\1\2"),
    /* extensions (RFC 9112 §7.1.1) */
    CK_OK("5;a\r\nhello\r\n0\r\n\r\n", "hello"),
    CK_OK("5;a=b\r\nhello\r\n0\r\n\r\n", "hello"),
    CK_OK("5;a=\"b c\"\r\nhello\r\n0\r\n\r\n", "hello"),
    CK_OK("5;a=\"\\\"q\\\\\"\r\nhello\r\n0\r\n\r\n", "hello"),
    CK_OK("5 ;a\r\nhello\r\n0\r\n\r\n", "hello"),
    CK_OK("5\t; a = b ;c\r\nhello\r\n0\r\n\r\n", "hello"),
    CK_OK("5;a;b=c;d=\"e\";f\r\nhello\r\n0\r\n\r\n", "hello"),
    CK_OK("5;a ;b\r\nhello\r\n0\r\n\r\n", "hello"),
    CK_OK("5;a=\"\"\r\nhello\r\n0\r\n\r\n", "hello"),
    CK_OK("5;a=\"\xc3\xa9\"\r\nhello\r\n0\r\n\r\n", "hello"),
    CK_OK("0;x=y\r\n\r\n", ""),
    /* trailers */
    CK_OK("0\r\nX: y\r\n\r\n", ""),
    CK_OK("0\r\nX:\r\nY: z \t\r\n\r\n", ""),
    CK_OK("5\r\nhello\r\n0\r\nVary: *\r\nContent-Type: text/plain\r\n\r\n", "hello"),
    /* what follows the body is the next request's */
    CK_OK_AT("0\r\n\r\nGET / HTTP/1.1\r\n", "", 5),
    CK_OK_AT("2\r\nab\r\n0\r\n\r\n\r\n", "ab", 12),
    /* not finished yet */
    CK_MORE("", ""),
    CK_MORE("5", ""),
    CK_MORE("5\r", ""),
    CK_MORE("5\r\n", ""),
    CK_MORE("5\r\nhel", "hel"),
    CK_MORE("5\r\nhello", "hello"),
    CK_MORE("5\r\nhello\r\n", "hello"),
    CK_MORE("5\r\nhello\r\n0\r\n", "hello"),
    CK_MORE("5\r\nhello\r\n0\r\n\r", "hello"),
    CK_MORE("0\r\nX: y\r\n", ""),
    CK_MORE("7fffffffffffffff\r\nabc", "abc"),
    CK_MORE("5;a=\"unterminated", ""),
    /* sizes */
    CK_BAD("\r\n"),
    CK_BAD("\r\n\r\n"),
    CK_BAD("x\r\n"),
    CK_BAD("-5\r\nhello\r\n"),
    CK_BAD("+5\r\nhello\r\n"),
    CK_BAD("0x5\r\nhello\r\n"),
    CK_BAD(" 5\r\nhello\r\n"),
    CK_BAD("5 \r\nhello\r\n"),
    CK_BAD("5\t\r\nhello\r\n"),
    CK_BAD("5 5\r\nhello\r\n"),
    CK_BAD("5g\r\nhello\r\n"),
    CK_BAD("\xd9\xa5\r\n"),
    CK_BAD("8000000000000000\r\n"), /* 2^63 */
    CK_BAD("10000000000000000\r\n"),
    CK_BAD("ffffffffffffffffff\r\n"),
    CK_BAD("00000000000000000008000000000000000\r\n"),
    /* line ends */
    CK_BAD("5\nhello\r\n0\r\n\r\n"),
    CK_BAD("5\r\rhello\r\n0\r\n\r\n"),
    CK_BAD("5\rhello\r\n"),
    CK_BAD("5\r\nhello\n0\r\n\r\n"),
    CK_BAD("5\r\nhello\r0\r\n\r\n"),
    CK_BAD("5\r\nhelloX\r\n0\r\n\r\n"),
    CK_BAD("5\r\nhello0\r\n\r\n"),
    CK_BAD("3\r\nfoo\r\n\r\n"), /* missing last-chunk */
    CK_BAD("0\r\n\n"),
    CK_BAD("0\r\n\r\r"),
    CK_BAD("0\n\r\n"),
    /* extensions */
    CK_BAD("5;\r\nhello\r\n"),
    CK_BAD("5; \r\nhello\r\n"),
    CK_BAD("5;=a\r\nhello\r\n"),
    CK_BAD("5;a=\r\nhello\r\n"),
    CK_BAD("5;a=\"b\r\nhello\r\n"),
    CK_BAD("5;a=\"b\"c\r\nhello\r\n"),
    CK_BAD("5;a b\r\nhello\r\n"),
    CK_BAD("5;a \r\nhello\r\n"),
    CK_BAD("5;a=b \r\nhello\r\n"),
    CK_BAD("5;a=b c\r\nhello\r\n"),
    CK_BAD("5;a\x01\r\nhello\r\n"),
    CK_BAD("5;a=\"\x01\"\r\nhello\r\n"),
    CK_BAD("5;a=\"\\\x01\"\r\nhello\r\n"),
    CK_BAD("5;a=\"\x7f\"\r\nhello\r\n"),
    CK_BAD("5;a=b=c\r\nhello\r\n"),
    CK_BAD("5;a=(b)\r\nhello\r\n"),
    CK_BAD("5;a\nhello\r\n"),
    CK_BAD("5;ilovew3=\"abc\";somuchlove=\"def; ghi\r\nhello\r\n"),
    CK_BAD("2 erfrferferf\r\naa\r\n0 rrrr\r\n\r\n"),
    /* trailers */
    CK_BAD("0\r\n X: y\r\n\r\n"),
    CK_BAD("0\r\nX: y\r\n z\r\n\r\n"),
    CK_BAD("0\r\nX : y\r\n\r\n"),
    CK_BAD("0\r\nX: y\n\r\n"),
    CK_BAD("0\r\nX: y\r\r\n"),
    CK_BAD("0\r\nX: a\0b\r\n\r\n"),
    CK_BAD("0\r\nX: a\x01\r\n\r\n"),
    CK_BAD("0\r\n: y\r\n\r\n"),
    CK_BAD("0\r\nX\r\n\r\n"),
    CK_BAD("0\r\nX(: y\r\n\r\n"),
};

static void check_ck_row(const ck_row *t, size_t i)
{
    char out[256];
    nx_h1_chunked c;
    nx_h1_error e;
    size_t used, olen;

    nx_h1_chunked_init(&c);
    int r = nx_h1_chunked_decode(&c, t->in, t->len, &used, out, &olen, &e);
    cr_assert_eq(r, t->expect, "row %zu: expected %d, got %d (%s)", i, t->expect, r,
                 r == NX_H1_ERROR ? e.reason : "");
    if (r == NX_H1_ERROR) {
        cr_assert_eq(e.status, 400);
        cr_assert_leq(e.offset, t->len);
    } else {
        cr_assert_eq(olen, t->blen, "row %zu: body length %zu", i, olen);
        cr_assert_eq(memcmp(out, t->body, t->blen), 0, "row %zu", i);
        cr_assert_eq(used, t->used ? t->used : t->len, "row %zu: used %zu", i, used);
    }
    /* every split point, byte by byte and in place must all agree (see the invariants) */
    for (size_t k = 0; k <= t->len; k++) {
        const char *why = h1inv_chunked(t->in, t->len, k);
        cr_assert_null(why, "row %zu split %zu: %s", i, k, why);
    }
}

Test(http1_chunked, table)
{
    for (size_t i = 0; i < sizeof ck_rows / sizeof ck_rows[0]; i++)
        check_ck_row(&ck_rows[i], i);
}

Test(http1_chunked, three_way_splits)
{
    static const char in[] = "5;a=\"b\"\r\nhello\r\n6\r\n world\r\n0\r\nT: v\r\n\r\nNEXT";
    size_t len = sizeof in - 1;
    for (size_t a = 0; a <= len; a++) {
        for (size_t b = a; b <= len; b++) {
            nx_h1_chunked c;
            nx_h1_error e;
            char out[64];
            size_t o = 0, used = 0, cn, on;
            size_t cuts[4] = {0, a, b, len};
            int r = NX_H1_INCOMPLETE;
            nx_h1_chunked_init(&c);
            for (int p = 0; p < 3 && r == NX_H1_INCOMPLETE; p++) {
                r = nx_h1_chunked_decode(&c, in + cuts[p], cuts[p + 1] - cuts[p], &cn, out + o, &on,
                                         &e);
                o += on;
                used += cn;
            }
            cr_assert_eq(r, NX_OK, "cuts %zu %zu", a, b);
            cr_assert_eq(used, len - 4);
            cr_assert_eq(o, 11);
            cr_assert_eq(memcmp(out, "hello world", 11), 0);
        }
    }
}

Test(http1_chunked, in_place)
{
    char in[] = "3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
    nx_h1_chunked c;
    nx_h1_error e;
    size_t used, olen;
    nx_h1_chunked_init(&c);
    cr_assert_eq(nx_h1_chunked_decode(&c, in, sizeof in - 1, &used, in, &olen, &e), NX_OK);
    cr_assert_eq(olen, 5);
    cr_assert_eq(memcmp(in, "abcde", 5), 0);
    cr_assert_eq(used, sizeof in - 1);
}

Test(http1_chunked, after_done_and_after_error)
{
    nx_h1_chunked c;
    nx_h1_error e;
    size_t used, olen;
    char out[16];

    nx_h1_chunked_init(&c);
    cr_assert_eq(nx_h1_chunked_decode(&c, "0\r\n\r\n", 5, &used, out, &olen, &e), NX_OK);
    cr_assert_eq(nx_h1_chunked_decode(&c, "GET", 3, &used, out, &olen, &e), NX_OK);
    cr_assert_eq(used, 0);

    nx_h1_chunked_init(&c);
    cr_assert_eq(nx_h1_chunked_decode(&c, "z", 1, &used, out, &olen, &e), NX_H1_ERROR);
    cr_assert_eq(e.offset, 0);
    cr_assert_eq(nx_h1_chunked_decode(&c, "0\r\n\r\n", 5, &used, out, &olen, &e), NX_H1_ERROR);
}

Test(http1_chunked, big_chunk_streams)
{
    /* a chunk larger than any read: data passes through as it arrives */
    nx_h1_chunked c;
    nx_h1_error e;
    size_t used, olen;
    static char data[70000], out[70000];
    nx_h1_chunked_init(&c);
    cr_assert_eq(nx_h1_chunked_decode(&c, "10000\r\n", 7, &used, out, &olen, &e), NX_H1_INCOMPLETE);
    memset(data, 'x', sizeof data);
    size_t total = 0;
    for (size_t off = 0; off < 65536; off += 1000) {
        size_t n = 65536 - off < 1000 ? 65536 - off : 1000;
        cr_assert_eq(nx_h1_chunked_decode(&c, data, n, &used, out + total, &olen, &e),
                     NX_H1_INCOMPLETE);
        cr_assert_eq(used, n);
        total += olen;
    }
    cr_assert_eq(total, 65536);
    cr_assert_eq(nx_h1_chunked_decode(&c, "\r\n0\r\n\r\n", 7, &used, out, &olen, &e), NX_OK);
}

Test(http1_chunked, line_and_trailer_limits)
{
    static char in[20000];
    nx_h1_chunked c;
    nx_h1_error e;
    size_t used, olen;
    static char out[20000];

    /* an endless extension is cut off */
    memcpy(in, "5;a=", 4);
    memset(in + 4, 'b', 10000);
    nx_h1_chunked_init(&c);
    cr_assert_eq(nx_h1_chunked_decode(&c, in, 10004, &used, out, &olen, &e), NX_H1_ERROR);
    cr_assert_leq(e.offset, 4096);

    /* a trailer section over 8192 bytes */
    size_t o = (size_t)snprintf(in, sizeof in, "0\r\n");
    while (o < 9000)
        o += (size_t)snprintf(in + o, sizeof in - o, "X-Trailer: %s\r\n", "0123456789abcdef");
    memcpy(in + o, "\r\n", 2);
    nx_h1_chunked_init(&c);
    cr_assert_eq(nx_h1_chunked_decode(&c, in, o + 2, &used, out, &olen, &e), NX_H1_ERROR);

    /* a trailer section well under it is fine */
    o = (size_t)snprintf(in, sizeof in, "0\r\n");
    while (o < 4000)
        o += (size_t)snprintf(in + o, sizeof in - o, "X-Trailer: %s\r\n", "0123456789abcdef");
    memcpy(in + o, "\r\n", 2);
    nx_h1_chunked_init(&c);
    cr_assert_eq(nx_h1_chunked_decode(&c, in, o + 2, &used, out, &olen, &e), NX_OK);
}

/* Every byte value as the chunk size's second byte. */
Test(http1_chunked, size_bytes)
{
    char in[] = "1?\r\n0123456789abcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
    for (int ch = 0; ch < 256; ch++) {
        in[1] = (char)ch;
        nx_h1_chunked c;
        nx_h1_error e;
        size_t used, olen;
        char out[128];
        nx_h1_chunked_init(&c);
        int r = nx_h1_chunked_decode(&c, in, sizeof in - 1, &used, out, &olen, &e);
        bool hex = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
        if (hex) /* 0x10-0x1f bytes of data, then no CRLF where expected (or short) */
            cr_assert(r == NX_H1_ERROR || r == NX_H1_INCOMPLETE);
        else
            cr_assert_eq(r, NX_H1_ERROR, "byte %02x", ch);
        cr_assert_null(h1inv_chunked(in, sizeof in - 1, 7));
    }
}
