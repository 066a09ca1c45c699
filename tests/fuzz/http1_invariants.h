/*
 * http1_invariants.h - properties every result of nx_h1_parse_head and nx_h1_chunked_decode
 * must have, whatever the input bytes. Shared by the libFuzzer targets in this directory and
 * by tests/unit/http/http1_regress_test.c, which replays the corpus and past crashers, so a
 * property checked while fuzzing is checked on every unit run too.
 *
 * Each check returns NULL when the property holds, else a static description of what broke.
 * The functions are static inline so a test that uses only some of them stays warning-free.
 */
#ifndef NX_TEST_HTTP1_INVARIANTS_H
#define NX_TEST_HTTP1_INVARIANTS_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "http/http1_parse.h"

static inline bool h1inv_span_in(nx_str s, const char *lo, const char *hi)
{
    if (s.ptr == NULL)
        return false; /* even empty spans point into the buffer, so memcpy(d, p, 0) is safe */
    return s.ptr >= lo && s.ptr <= hi && s.len <= (size_t)(hi - s.ptr);
}

static inline bool h1inv_is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* A successful parse: everything the request says must be backed by the head's bytes. */
static inline const char *h1inv_request(const char *buf, int r, const nx_h1_request *q,
                                        size_t max_headers)
{
    const char *end = buf + r;

    if (!h1inv_span_in(q->method, buf, end) || q->method.len == 0)
        return "method span";
    if (!h1inv_span_in(q->target, buf, end) || q->target.len == 0)
        return "target span";
    const char *t0 = q->target.ptr, *t1 = q->target.ptr + q->target.len;
    if (!h1inv_span_in(q->path, t0, t1) || !h1inv_span_in(q->query, t0, t1))
        return "path/query outside the target";
    if (q->query.len > 0 && q->query.ptr[-1] != '?')
        return "query not after '?'";
    if (memchr(q->path.ptr, '?', q->path.len))
        return "'?' inside the path";
    if (memchr(q->target.ptr, '#', q->target.len))
        return "fragment accepted";
    for (size_t i = 0; i < q->target.len; i++) {
        unsigned char c = (unsigned char)q->target.ptr[i];
        if (c <= 0x20 || c >= 0x7f)
            return "control, space or non-ASCII byte in the target";
    }
    if (q->version != 10 && q->version != 11)
        return "version";
    if (q->nheaders > NX_H1_MAX_HEADERS || q->nheaders > max_headers)
        return "header count over the limit";
    for (size_t i = 0; i < q->nheaders; i++) {
        const nx_h1_header *h = &q->headers[i];
        if (!h1inv_span_in(h->name, buf, end) || h->name.len == 0)
            return "header name span";
        if (!h1inv_span_in(h->value, buf, end))
            return "header value span";
        if (h->value.len > 0 &&
            (h1inv_is_ows(h->value.ptr[0]) || h1inv_is_ows(h->value.ptr[h->value.len - 1])))
            return "header value not trimmed";
        for (size_t k = 0; k < h->name.len; k++) {
            char c = h->name.ptr[k];
            if (c == ':' || h1inv_is_ows(c) || c == '\r' || c == '\n' || c == '\0')
                return "bad byte in header name";
        }
        for (size_t k = 0; k < h->value.len; k++) {
            unsigned char c = (unsigned char)h->value.ptr[k];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return "control byte in header value";
        }
    }
    if (q->content_length < -1)
        return "negative Content-Length";
    if (q->chunked && q->content_length != -1)
        return "both chunked and Content-Length";
    if (!h1inv_span_in(q->host, buf, end))
        return "host span";
    if (q->version == 11 && q->host.len == 0)
        return "HTTP/1.1 without a host";
    if (q->version == 10 && (q->upgrade || q->expect_continue || q->chunked))
        return "HTTP/1.1 feature on HTTP/1.0";
    if (end[-1] != '\n' || end[-2] != '\r' || end[-3] != '\n' || end[-4] != '\r')
        return "head does not end in CRLF CRLF";
    return NULL;
}

static inline bool h1inv_status_ok(int status)
{
    return status == 400 || status == 414 || status == 431 || status == 501 || status == 505;
}

/*
 * Parses buf[0..len) and checks the result, then that the answer is a property of the bytes:
 * the head alone parses the same, a shorter prefix is INCOMPLETE, and a prefix that already
 * fails fails the same way as the whole.
 */
static inline const char *h1inv_head(const char *buf, size_t len, const nx_h1_limits *lim)
{
    nx_h1_request *q = malloc(sizeof *q);
    nx_h1_request *q2 = malloc(sizeof *q2);
    nx_h1_error e, e2;
    const char *why = NULL;
    nx_h1_limits def;

    if (q == NULL || q2 == NULL)
        abort();
    if (lim == NULL) {
        nx_h1_limits_default(&def);
        lim = &def;
    }
    memset(&e, 0, sizeof e);
    int r = nx_h1_parse_head(buf, len, lim, q, &e);
    if (r == NX_H1_ERROR) {
        if (!h1inv_status_ok(e.status))
            why = "error status";
        else if (e.offset >= len)
            why = "error offset outside the input";
        else if (e.reason == NULL || e.reason[0] == '\0')
            why = "error without a reason";
        else if (nx_h1_parse_head(buf, e.offset, lim, q2, &e2) != NX_H1_INCOMPLETE)
            why = "input before the error offset is not just incomplete";
    } else if (r > 0) {
        if ((size_t)r > len || r < 18)
            why = "head length";
        else if ((why = h1inv_request(buf, r, q, lim->max_headers)) != NULL)
            ;
        else if (nx_h1_parse_head(buf, (size_t)r, lim, q2, &e2) != r)
            why = "the head alone parses differently";
        else if (memcmp(&q->method, &q2->method, sizeof q->method) != 0 ||
                 q->nheaders != q2->nheaders || q->content_length != q2->content_length ||
                 q->chunked != q2->chunked || q->keep_alive != q2->keep_alive)
            why = "the head alone gives different fields";
        else if (nx_h1_parse_head(buf, (size_t)r - 1, lim, q2, &e2) != NX_H1_INCOMPLETE)
            why = "the head minus its last byte is not incomplete";
    } else if (r != NX_H1_INCOMPLETE) {
        why = "unknown return value";
    }
    if (why == NULL && len > 1) {
        size_t half = len / 2;
        int h = nx_h1_parse_head(buf, half, lim, q2, &e2);
        if (h == NX_H1_ERROR &&
            (r != NX_H1_ERROR || e2.status != e.status || e2.offset != e.offset))
            why = "a prefix fails differently from the whole input";
        if (h > 0 && h != r)
            why = "a prefix parses to a different head";
    }
    free(q);
    free(q2);
    return why;
}

/*
 * Decodes buf as a chunked body one-shot, then byte by byte, then split in two at `split`,
 * then in place; all four must agree on the outcome, the bytes used and the payload.
 */
static inline const char *h1inv_chunked(const char *buf, size_t len, size_t split)
{
    char *out = malloc(len + 1), *out2 = malloc(len + 1), *inplace = malloc(len + 1);
    nx_h1_chunked c;
    nx_h1_error e;
    size_t used, olen, cn, on;
    const char *why = NULL;

    if (out == NULL || out2 == NULL || inplace == NULL)
        abort();
    nx_h1_chunked_init(&c);
    int r = nx_h1_chunked_decode(&c, buf, len, &used, out, &olen, &e);
    if (used > len || olen > used)
        why = "consumed or output length";
    else if (r == NX_H1_INCOMPLETE && used != len)
        why = "incomplete without using all input";
    else if (r == NX_H1_ERROR && (e.status != 400 || e.offset > len || e.reason == NULL))
        why = "chunked error fields";
    else if (r != NX_OK && r != NX_H1_INCOMPLETE && r != NX_H1_ERROR)
        why = "unknown return value";

    /* byte by byte */
    size_t total = 0, used2 = len;
    int r2 = NX_H1_INCOMPLETE;
    nx_h1_chunked_init(&c);
    for (size_t i = 0; why == NULL && i < len; i++) {
        r2 = nx_h1_chunked_decode(&c, buf + i, 1, &cn, out2 + total, &on, &e);
        total += on;
        if (r2 != NX_H1_INCOMPLETE) {
            used2 = i + cn;
            break;
        }
    }
    if (why == NULL && (r2 != r || used2 != used || total != olen || memcmp(out, out2, olen)))
        why = "byte-by-byte decoding differs from one-shot";

    /* two pieces */
    if (why == NULL && split <= len) {
        nx_h1_chunked_init(&c);
        int ra = nx_h1_chunked_decode(&c, buf, split, &cn, out2, &on, &e);
        total = on;
        used2 = cn;
        int rb = ra;
        if (ra == NX_H1_INCOMPLETE) {
            rb = nx_h1_chunked_decode(&c, buf + split, len - split, &cn, out2 + total, &on, &e);
            total += on;
            used2 += cn;
        }
        if (rb != r || used2 != used || total != olen || memcmp(out, out2, olen))
            why = "decoding in two pieces differs from one-shot";
    }

    /* in place: the output never overtakes the input */
    if (why == NULL) {
        memcpy(inplace, buf, len);
        nx_h1_chunked_init(&c);
        int r3 = nx_h1_chunked_decode(&c, inplace, len, &cn, inplace, &on, &e);
        if (r3 != r || cn != used || on != olen || memcmp(inplace, out, olen))
            why = "in-place decoding differs";
    }
    free(out);
    free(out2);
    free(inplace);
    return why;
}

/*
 * Everything the fuzz target checks for one input: the head with default limits and with
 * small limits (so short inputs reach the limit paths), the body after a chunked head, and
 * the whole input as a chunked body. Returns NULL or what broke.
 */
static inline const char *h1inv_all(const char *in, size_t size)
{
    const char *why;
    nx_h1_limits small = {16 + size % 64, 8 + size % 48, 64 + size % 256, 1 + size % 8};

    if ((why = h1inv_head(in, size, NULL)) != NULL)
        return why;
    if ((why = h1inv_head(in, size, &small)) != NULL)
        return why;

    nx_h1_request *q = malloc(sizeof *q);
    nx_h1_error e;
    if (q == NULL)
        abort();
    int r = nx_h1_parse_head(in, size, NULL, q, &e);
    size_t off = r > 0 && q->chunked ? (size_t)r : 0;
    free(q);
    if (off > 0 && (why = h1inv_chunked(in + off, size - off, (size - off) / 3)) != NULL)
        return why;
    return h1inv_chunked(in, size, size / 2);
}

#endif
