/*
 * llhttp_conformance_test.c - replays llhttp's request test cases against the Nexus parser.
 *
 * The cases are data, read at run time from the .md files in ../shared/conformance/llhttp/
 * request (override with NX_CONFORMANCE_DIR); that directory's README describes their format.
 * Each case's input is fed the way a connection would: nx_h1_parse_head, then the body by
 * Content-Length or nx_h1_chunked_decode, then the next pipelined request. The verdicts:
 *
 *  - llhttp rejects a strict case: Nexus must reject it too, and must not accept more request
 *    heads than llhttp got through before its error (else Nexus framed bytes llhttp refused).
 *  - a request-lenient-* case: Nexus must reject it (Nexus has no lenient mode).
 *  - llhttp accepts: Nexus must accept with the same method, URL, fields and body, or the
 *    case must be on the allow-list below with the reason Nexus gives. Where that reason is
 *    the missing Host, the case is replayed once more with a Host field added to each HTTP/1.1
 *    request, and that replay must then agree with llhttp (or give the listed second reason):
 *    so the Host rule cannot hide a disagreement about framing.
 *
 * A server closes the connection after a request without keep-alive; bytes left after that are
 * never served, which is what llhttp reports as "Data after Connection: close". After an
 * upgrade or CONNECT the rest is tunnel data, where llhttp pauses (codes 21-23 are pauses).
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/http1_parse.h"

#define MAX_REQS 16
#define MAX_FIELDS 128
#define HOST_LINE "Host: nx-conformance.invalid\r\n"
#define HOST_VALUE "nx-conformance.invalid"

/* ---- the allow-list ---------------------------------------------------------------------
 *
 * Cases llhttp (strict) accepts and Nexus rejects, each with the reason Nexus must give and
 * the RFC text that tells a server to reject. `host_reason` is the reason expected from the
 * replay with Host added, NULL when that replay must agree with llhttp. */

/* RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1
 * request message that lacks a Host header field". llhttp leaves this to its user. */
#define NO_HOST "missing Host header"

typedef struct allow_entry {
    const char *file;
    const char *title;
    const char *reason;      /* nx_h1_error.reason Nexus must give */
    const char *host_reason; /* reason in the replay with Host added; NULL: must agree */
} allow_entry;

/* RFC 9112 §3.2.4: the asterisk-form "is only used for a server-wide OPTIONS request". */
#define STAR "asterisk-form target outside OPTIONS"

/* RFC 9112 §2.3 and §3: HTTP-version is "HTTP/" DIGIT "." DIGIT (HTTP-name is case-sensitive),
 * and an invalid request-line SHOULD get 400. ICE, RTSP and HTTP/0.9 lines are not HTTP/1.x. */
#define BAD_VERSION "invalid HTTP version"
#define NO_VERSION "missing HTTP version"

/* RFC 9112 §3.2 and RFC 3986 §3.5: a request-target never carries a fragment. Refused rather
 * than cut off, because a hop that cuts it and one that keeps it route "/a#/../admin" to
 * different resources. */
#define FRAGMENT "fragment in request target"

/* RFC 9110 §4.2.4: a recipient SHOULD treat userinfo in an http(s) target URI as an error. */
#define USERINFO "userinfo in request target"

/* RFC 9110 §9.3.6: "A CONNECT request message does not have content"; with Content-Length the
 * bytes after the head are body to one reader and tunnel data to another. */
#define CONNECT_BODY "CONNECT request with a body"

static const allow_entry allow_list[] = {
    {"connection.md", "Emitting part of body and pausing", NO_HOST, NULL},
    {"connection.md", "Multiple tokens with folding and LWS", NO_HOST, NULL},
    {"connection.md", "Restarting when keep-alive is explicitly", NO_HOST, NULL},
    {"connection.md", "Sample", NO_HOST, NULL},
    {"connection.md", "Setting a flag and pausing", NO_HOST, NULL},
    {"connection.md", "Setting flag", NO_HOST, NULL},
    {"connection.md", "Setting flag on `close`", NO_HOST, NULL},
    {"connection.md", "Setting flag on `close` followed by tab", NO_HOST, NULL},
    {"content-length.md", "Spaces in `Content-Length` (surrounding)", NO_HOST, NULL},
    {"content-length.md", "Tabs in `Content-Length` (surrounding)", NO_HOST, NULL},
    {"content-length.md", "`Content-Length` with follow-up headers", NO_HOST, NULL},
    {"content-length.md", "`Content-Length` with zeroes", NO_HOST, NULL},
    {"finish.md", "It should be safe to finish after GET request", NO_HOST, NULL},
    {"method.md", "REPORT request", NO_HOST, NULL},
    {"method.md", "CONNECT with body", CONNECT_BODY, NULL},
    {"method.md", "M-SEARCH request", STAR, NULL},
    {"method.md", "PRI request HTTP2", STAR, NULL}, /* the h2 preface; see RFC 9113 §3.4 */
    {"method.md", "OPTIONS request with RTSP", BAD_VERSION, NULL},
    {"method.md", "SOURCE request with ICE", BAD_VERSION, NULL},
    /* ANNOUNCE is an RTSP method (RFC 2326) that llhttp accepts only on an RTSP/1.0
     * request line; the unknown method would be 501, but the version is refused first. */
    {"method.md", "ANNOUNCE request with RTSP", BAD_VERSION, NULL},
    {"pipelining.md", "Should parse multiple events", NO_HOST, NULL},
    {"sample.md", "255 ASCII in header value", NO_HOST, NULL},
    {"sample.md", "DUMBPACK", NO_HOST, NULL},
    {"sample.md", "Extended Characters", NO_HOST, NULL},
    {"sample.md", "No headers and no body", NO_HOST, NULL},
    {"sample.md", "One header and no body", NO_HOST, NULL},
    {"sample.md", "Prefix newline", NO_HOST, NULL},
    {"sample.md", "Request starting with CRLF", NO_HOST, NULL},
    {"sample.md", "Request with method starting with `H`", NO_HOST, NULL},
    {"sample.md", "Simple request", NO_HOST, NULL},
    {"sample.md", "No HTTP version", NO_VERSION, NULL},
    {"transfer-encoding.md", "Chunk extensions", NO_HOST, NULL},
    {"transfer-encoding.md", "Chunk extensions quoting", NO_HOST, NULL},
    {"transfer-encoding.md", "POST with `Transfer-Encoding: chunked`", NO_HOST, NULL},
    {"transfer-encoding.md", "Parse chunks with lowercase size", NO_HOST, NULL},
    {"transfer-encoding.md", "Parse chunks with uppercase size", NO_HOST, NULL},
    {"transfer-encoding.md", "Parsing and setting flag", NO_HOST, NULL},
    {"transfer-encoding.md", "Trailing headers", NO_HOST, NULL},
    {"transfer-encoding.md", "Two chunks and triple zero prefixed end chunk", NO_HOST, NULL},
    {"transfer-encoding.md", "POST with `chunked` as last transfer-encoding", FRAGMENT, NULL},
    {"transfer-encoding.md", "POST with `chunked` as last transfer-encoding (multiple headers)",
     FRAGMENT, NULL},
    {"uri.md", "Host terminated by a query string", NO_HOST, NULL},
    {"uri.md", "Query URL with question mark", NO_HOST, NULL},
    {"uri.md", "Query URL with vertical bar character", NO_HOST, NULL},
    {"uri.md", "Quotes in URI", NO_HOST, NULL},
    {"uri.md", "`host:port` terminated by a query string", NO_HOST, NULL},
    {"uri.md", "`host:port` terminated by a space", NO_HOST, NULL},
    {"uri.md", "Fragment in URI", FRAGMENT, NULL},
    {"uri.md", "`host:port` and basic auth", USERINFO, NULL},
    {NULL, NULL, NULL, NULL},
};

/* ---- small byte buffers ------------------------------------------------------------------ */

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static void buf_add(buf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = realloc(b->p, cap);
        cr_assert_not_null(b->p);
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_free(buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static bool bytes_eq(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* ---- one case from a .md file ------------------------------------------------------------ */

typedef struct tcase {
    char file[64];
    char title[256];
    char type[64];
    int line;
    bool pause, skip_body;
    buf raw; /* the http block, lines joined by \n */
    buf log;
} tcase;

/* The input as llhttp's harness builds it (see the README next to the cases). */
static void decode_input(const buf *raw, buf *out)
{
    buf joined = {0}, crlf = {0};

    for (size_t i = 0; i < raw->len; i++) {
        if (raw->p[i] == '\\' && i + 1 < raw->len && raw->p[i + 1] == '\n') {
            i++;
            continue;
        }
        buf_add(&joined, raw->p + i, 1);
    }
    for (size_t i = 0; i < joined.len; i++) {
        if (joined.p[i] == '\n')
            buf_add(&crlf, "\r\n", 2);
        else
            buf_add(&crlf, joined.p + i, 1);
    }
    for (size_t i = 0; i < crlf.len; i++) {
        char c = crlf.p[i];
        if (c != '\\' || i + 1 >= crlf.len) {
            buf_add(out, &c, 1);
            continue;
        }
        char e = crlf.p[i + 1];
        unsigned v;
        if (e == 'r' || e == 'n' || e == 't' || e == 'f') {
            v = e == 'r' ? '\r' : e == 'n' ? '\n' : e == 't' ? '\t' : '\f';
            i++;
        } else if (e == 'x' && i + 3 < crlf.len) {
            char hex[3] = {crlf.p[i + 2], crlf.p[i + 3], 0};
            v = (unsigned)strtoul(hex, NULL, 16);
            i += 3;
        } else if (e >= '0' && e <= '7') {
            unsigned k = 0;
            v = 0;
            while (k < 3 && i + 1 + k < crlf.len && crlf.p[i + 1 + k] >= '0' &&
                   crlf.p[i + 1 + k] <= '7') {
                v = v * 8 + (unsigned)(crlf.p[i + 1 + k] - '0');
                k++;
            }
            i += k;
        } else {
            v = (unsigned char)c;
        }
        /* An escape names a character of the JavaScript string llhttp's harness feeds as
         * UTF-8, so "\xff" is two bytes on the wire; the logged offsets count them so. */
        unsigned char enc[2];
        if (v < 0x80) {
            enc[0] = (unsigned char)v;
            buf_add(out, enc, 1);
        } else {
            enc[0] = (unsigned char)(0xc0 | (v >> 6));
            enc[1] = (unsigned char)(0x80 | (v & 0x3f));
            buf_add(out, enc, 2);
        }
    }
    buf_free(&joined);
    buf_free(&crlf);
}

static void json_string(const char *meta, const char *key, char *out, size_t outsz)
{
    out[0] = '\0';
    const char *k = strstr(meta, key);
    if (!k)
        return;
    k = strchr(k + strlen(key), ':');
    if (!k)
        return;
    k = strchr(k, '"');
    if (!k)
        return;
    k++;
    size_t n = 0;
    while (k[n] && k[n] != '"' && n + 1 < outsz)
        n++;
    memcpy(out, k, n);
    out[n] = '\0';
}

/* Reads every case of one .md file; returns the count, *cases allocated. */
static size_t read_cases(const char *dir, const char *name, tcase **cases)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "r");
    cr_assert_not_null(fp, "cannot open %s", path);

    size_t n = 0, cap = 0;
    char title[256] = "";
    char *line = NULL;
    size_t lcap = 0;
    ssize_t got;
    int lineno = 0;
    tcase *cur = NULL;
    int in_block = 0; /* 1: http, 2: log */
    bool first_line = true;

    *cases = NULL;
    while ((got = getline(&line, &lcap, fp)) >= 0) {
        lineno++;
        if (got > 0 && line[got - 1] == '\n')
            line[--got] = '\0';
        if (in_block) {
            if (strcmp(line, "```") == 0) {
                in_block = in_block == 1 ? 0 : -1;
                if (in_block == -1) {
                    cur = NULL; /* log done: case complete */
                    in_block = 0;
                }
                continue;
            }
            buf *b = in_block == 1 ? &cur->raw : &cur->log;
            if (in_block == 1 && !first_line)
                buf_add(b, "\n", 1);
            buf_add(b, line, (size_t)got);
            if (in_block == 2)
                buf_add(b, "\n", 1);
            first_line = false;
            continue;
        }
        if (line[0] == '#') {
            const char *t = line;
            while (*t == '#')
                t++;
            while (*t == ' ')
                t++;
            snprintf(title, sizeof title, "%s", t);
            continue;
        }
        if (strncmp(line, "<!-- meta=", 10) == 0) {
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                *cases = realloc(*cases, cap * sizeof **cases);
                cr_assert_not_null(*cases);
            }
            cur = &(*cases)[n++];
            memset(cur, 0, sizeof *cur);
            snprintf(cur->file, sizeof cur->file, "%s", name);
            snprintf(cur->title, sizeof cur->title, "%s", title);
            cur->line = lineno;
            json_string(line, "\"type\"", cur->type, sizeof cur->type);
            cur->pause = strstr(line, "\"pause\"") != NULL;
            cur->skip_body = strstr(line, "\"skipBody\"") != NULL;
            continue;
        }
        if (cur && strcmp(line, "```http") == 0 && cur->raw.len == 0) {
            in_block = 1;
            first_line = true;
            continue;
        }
        if (cur && strcmp(line, "```log") == 0) {
            in_block = 2;
            continue;
        }
    }
    free(line);
    fclose(fp);
    return n;
}

/* ---- what llhttp did, from the log ------------------------------------------------------- */

typedef struct xfield {
    buf name, value;
} xfield;

typedef struct xreq {
    buf method, url, body;
    xfield fields[MAX_FIELDS];
    size_t nfields;
    bool head_done, complete;
} xreq;

typedef struct expect {
    xreq reqs[MAX_REQS];
    size_t nreq, nheads, ncomplete;
    bool error, paused;
    int code;
} expect;

static void expect_free(expect *e)
{
    for (size_t i = 0; i < e->nreq; i++) {
        xreq *r = &e->reqs[i];
        buf_free(&r->method);
        buf_free(&r->url);
        buf_free(&r->body);
        for (size_t k = 0; k < r->nfields; k++) {
            buf_free(&r->fields[k].name);
            buf_free(&r->fields[k].value);
        }
    }
}

/* Span contents are taken from the input by offset and length, not from the quoted text in
 * the log, which shows non-ASCII bytes re-encoded. */
static void parse_log(const tcase *tc, const buf *in, expect *e)
{
    memset(e, 0, sizeof *e);
    xreq *r = NULL;
    const char *lp = tc->log.p ? tc->log.p : "";
    char prev_span[32] = "";

    while (*lp) {
        const char *nl = strchr(lp, '\n');
        size_t ll = nl ? (size_t)(nl - lp) : strlen(lp);
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)(ll < 511 ? ll : 511), lp);
        lp += ll + (nl ? 1 : 0);

        size_t off, len;
        char kind[32];
        int code;
        if (strstr(line, " message begin")) {
            cr_assert_lt(e->nreq, MAX_REQS);
            r = &e->reqs[e->nreq++];
            prev_span[0] = '\0';
        } else if (sscanf(line, "off=%zu len=%zu span[%31[^]]]", &off, &len, kind) == 3) {
            cr_assert_not_null(r, "%s:%d span before message begin", tc->file, tc->line);
            cr_assert_leq(off + len, in->len, "%s:%d span outside input", tc->file, tc->line);
            const char *p = in->p + off;
            if (strcmp(kind, "method") == 0) {
                buf_add(&r->method, p, len);
            } else if (strcmp(kind, "url") == 0) {
                buf_add(&r->url, p, len);
            } else if (r->head_done && strncmp(kind, "header_", 7) == 0) {
                /* trailer fields: Nexus checks and drops them */
            } else if (strcmp(kind, "header_field") == 0) {
                if (strcmp(prev_span, "header_field") != 0) {
                    cr_assert_lt(r->nfields, MAX_FIELDS);
                    r->nfields++;
                }
                buf_add(&r->fields[r->nfields - 1].name, p, len);
            } else if (strcmp(kind, "header_value") == 0) {
                buf_add(&r->fields[r->nfields - 1].value, p, len);
            } else if (strcmp(kind, "body") == 0) {
                buf_add(&r->body, p, len);
            }
            snprintf(prev_span, sizeof prev_span, "%s", kind);
        } else if (strstr(line, " header_field complete") ||
                   strstr(line, " header_value complete")) {
            prev_span[0] = '\0';
        } else if (strstr(line, " headers complete")) {
            r->head_done = true;
            e->nheads++;
        } else if (strstr(line, " message complete")) {
            r->complete = true;
            e->ncomplete++;
        } else if (sscanf(line, "off=%zu error code=%d", &off, &code) == 2) {
            if (code >= 21 && code <= 23) {
                e->paused = true;
            } else {
                e->error = true;
                e->code = code;
            }
        }
    }
}

/* ---- what Nexus does with the same bytes ------------------------------------------------- */

enum { F_END, F_INCOMPLETE, F_REJECT, F_CLOSED_DATA, F_STOP };
static const char *final_name[] = {"end", "incomplete", "rejected", "closed with data left",
                                   "stopped (tunnel)"};

typedef struct greq {
    nx_h1_request head;
    buf body;
    bool complete;
} greq;

typedef struct run {
    greq reqs[MAX_REQS];
    size_t nheads, ncomplete;
    int final;
    nx_h1_error err;
    size_t err_at;    /* where the failing parse started */
    char broken[512]; /* an invariant of the parser itself failed */
} run;

static void run_free(run *r)
{
    for (size_t i = 0; i < MAX_REQS; i++)
        buf_free(&r->reqs[i].body);
}

static void broken(run *r, const char *fmt, ...)
{
    va_list ap;
    if (r->broken[0])
        return;
    va_start(ap, fmt);
    vsnprintf(r->broken, sizeof r->broken, fmt, ap);
    va_end(ap);
}

/*
 * Feeding a head in pieces must give what feeding it whole gives: INCOMPLETE for every
 * prefix of an accepted head, and for a rejected input never success, and once an error
 * then that error for every longer prefix.
 */
static void check_prefixes(run *r, const char *p, size_t len, int res, const nx_h1_error *err)
{
    nx_h1_request *tmp = malloc(sizeof *tmp);
    nx_h1_error e2;
    bool erred = false;

    cr_assert_not_null(tmp);
    size_t upto = res > 0 ? (size_t)res : len;
    for (size_t k = 0; k < upto; k++) {
        int x = nx_h1_parse_head(p, k, NULL, tmp, &e2);
        if (res > 0 && x != NX_H1_INCOMPLETE) {
            broken(r, "prefix %zu of an accepted head gave %d", k, x);
            break;
        }
        if (res == NX_H1_ERROR) {
            if (x > 0) {
                broken(r, "prefix %zu of a rejected input was accepted", k);
                break;
            }
            if (x == NX_H1_ERROR) {
                erred = true;
                if (e2.status != err->status || e2.offset != err->offset) {
                    broken(r, "prefix %zu fails with %d@%zu, whole input with %d@%zu", k, e2.status,
                           e2.offset, err->status, err->offset);
                    break;
                }
            } else if (erred) {
                broken(r, "prefix %zu incomplete after a shorter prefix failed", k);
                break;
            }
        }
    }
    if (res > 0 && nx_h1_parse_head(p, (size_t)res, NULL, tmp, &e2) != res)
        broken(r, "the head alone does not parse to its own length");
    free(tmp);
}

/* Decodes a chunked body one-shot and byte by byte; both must agree. */
static int decode_chunked(run *r, const char *p, size_t len, buf *body, size_t *used)
{
    nx_h1_chunked c;
    nx_h1_error err;
    size_t consumed, olen;
    char *out = malloc(len + 1);

    cr_assert_not_null(out);
    nx_h1_chunked_init(&c);
    int res = nx_h1_chunked_decode(&c, p, len, &consumed, out, &olen, &err);
    buf_add(body, out, olen);

    nx_h1_chunked_init(&c);
    size_t total = 0, used2 = len;
    int res2 = NX_H1_INCOMPLETE;
    for (size_t at = 0; at < len; at++) {
        size_t cn, on;
        nx_h1_error e2;
        res2 = nx_h1_chunked_decode(&c, p + at, 1, &cn, out + total, &on, &e2);
        total += on;
        if (res2 != NX_H1_INCOMPLETE) {
            used2 = at + cn;
            break;
        }
    }
    if (res2 != res || used2 != consumed || total != olen ||
        (olen > 0 && memcmp(out, body->p, olen) != 0))
        broken(r, "chunked decoding byte by byte differs from one-shot");
    free(out);
    *used = consumed;
    if (res == NX_H1_ERROR)
        r->err = err;
    return res;
}

static void run_nexus(const char *in, size_t len, run *r)
{
    size_t pos = 0;

    memset(r, 0, sizeof *r);
    r->final = F_END;
    while (pos < len) {
        if (r->nheads == MAX_REQS) {
            broken(r, "too many requests");
            return;
        }
        greq *g = &r->reqs[r->nheads];
        int res = nx_h1_parse_head(in + pos, len - pos, NULL, &g->head, &r->err);
        check_prefixes(r, in + pos, len - pos, res, &r->err);
        if (res == NX_H1_INCOMPLETE) {
            r->final = F_INCOMPLETE;
            return;
        }
        if (res == NX_H1_ERROR) {
            r->final = F_REJECT;
            r->err_at = pos;
            return;
        }
        r->nheads++;
        pos += (size_t)res;

        nx_h1_request *h = &g->head;
        if (h->chunked) {
            size_t used;
            int st = decode_chunked(r, in + pos, len - pos, &g->body, &used);
            if (st == NX_H1_ERROR) {
                r->final = F_REJECT;
                r->err_at = pos;
                return;
            }
            if (st == NX_H1_INCOMPLETE) {
                r->final = F_INCOMPLETE;
                return;
            }
            pos += used;
        } else if (h->content_length > 0) {
            if ((uint64_t)h->content_length > len - pos) {
                r->final = F_INCOMPLETE;
                return;
            }
            buf_add(&g->body, in + pos, (size_t)h->content_length);
            pos += (size_t)h->content_length;
        }
        g->complete = true;
        r->ncomplete++;

        if (h->upgrade || (h->method.len == 7 && memcmp(h->method.ptr, "CONNECT", 7) == 0)) {
            r->final = F_STOP;
            return;
        }
        if (!h->keep_alive) {
            while (len - pos >= 2 && in[pos] == '\r' && in[pos + 1] == '\n')
                pos += 2;
            r->final = pos < len ? F_CLOSED_DATA : F_END;
            return;
        }
    }
}

static bool rejected(const run *r)
{
    return r->final == F_REJECT || r->final == F_CLOSED_DATA;
}

/* ---- comparing ----------------------------------------------------------------------------- */

static bool is_injected(const nx_h1_header *h)
{
    return h->name.len == 4 && strncasecmp(h->name.ptr, "host", 4) == 0 &&
           bytes_eq(h->value.ptr, h->value.len, HOST_VALUE, strlen(HOST_VALUE));
}

/* Compares request i; Nexus trims trailing whitespace from values, llhttp does not. */
static bool same_request(const xreq *x, const greq *g, bool bodies, char *why, size_t whysz)
{
    const nx_h1_request *h = &g->head;
    if (!bytes_eq(x->method.p, x->method.len, h->method.ptr, h->method.len)) {
        snprintf(why, whysz, "method differs");
        return false;
    }
    if (!bytes_eq(x->url.p, x->url.len, h->target.ptr, h->target.len)) {
        snprintf(why, whysz, "url differs: llhttp \"%s\", Nexus \"%.*s\"", x->url.p ? x->url.p : "",
                 (int)h->target.len, h->target.ptr);
        return false;
    }
    size_t k = 0;
    for (size_t i = 0; i < h->nheaders; i++) {
        const nx_h1_header *f = &h->headers[i];
        if (is_injected(f))
            continue;
        if (k >= x->nfields) {
            snprintf(why, whysz, "Nexus has more fields");
            return false;
        }
        const xfield *xf = &x->fields[k++];
        size_t vl = xf->value.len;
        while (vl > 0 && (xf->value.p[vl - 1] == ' ' || xf->value.p[vl - 1] == '\t'))
            vl--;
        if (!bytes_eq(xf->name.p, xf->name.len, f->name.ptr, f->name.len) ||
            !bytes_eq(xf->value.p, vl, f->value.ptr, f->value.len)) {
            snprintf(why, whysz, "field %zu differs: llhttp \"%s: %.*s\", Nexus \"%.*s: %.*s\"",
                     k - 1, xf->name.p ? xf->name.p : "", (int)vl, xf->value.p ? xf->value.p : "",
                     (int)f->name.len, f->name.ptr, (int)f->value.len, f->value.ptr);
            return false;
        }
    }
    if (k != x->nfields) {
        snprintf(why, whysz, "llhttp has more fields");
        return false;
    }
    if (bodies && x->complete && g->complete &&
        !bytes_eq(x->body.p, x->body.len, g->body.p, g->body.len)) {
        snprintf(why, whysz, "body differs: llhttp %zu bytes, Nexus %zu", x->body.len, g->body.len);
        return false;
    }
    return true;
}

/* The requests both parsers got through agree. */
static bool common_agree(const expect *e, const run *r, char *why, size_t whysz)
{
    size_t n = r->nheads < e->nheads ? r->nheads : e->nheads;
    for (size_t i = 0; i < n; i++) {
        char w[400];
        if (!same_request(&e->reqs[i], &r->reqs[i], true, w, sizeof w)) {
            snprintf(why, whysz, "request %zu: %s", i, w);
            return false;
        }
    }
    return true;
}

/* Nexus accepted: everything llhttp saw must match, including where the input ran out. */
static bool full_agree(const expect *e, const run *r, char *why, size_t whysz)
{
    if (r->nheads != e->nheads || r->ncomplete != e->ncomplete) {
        snprintf(why, whysz, "llhttp: %zu heads, %zu complete; Nexus: %zu heads, %zu complete (%s)",
                 e->nheads, e->ncomplete, r->nheads, r->ncomplete, final_name[r->final]);
        return false;
    }
    return common_agree(e, r, why, whysz);
}

/* Adds HOST_LINE after the request line of the request that starts at `at`. */
static void inject_host(const buf *in, size_t at, buf *out)
{
    size_t p = at;
    while (p + 1 < in->len && in->p[p] == '\r' && in->p[p + 1] == '\n')
        p += 2;
    const char *eol = NULL;
    for (size_t i = p; i + 1 < in->len; i++) {
        if (in->p[i] == '\r' && in->p[i + 1] == '\n') {
            eol = in->p + i + 2;
            break;
        }
    }
    cr_assert_not_null(eol);
    size_t cut = (size_t)(eol - in->p);
    buf_add(out, in->p, cut);
    buf_add(out, HOST_LINE, strlen(HOST_LINE));
    buf_add(out, in->p + cut, in->len - cut);
}

/* Replays with Host added until Nexus stops rejecting for the missing Host. */
static void replay_with_host(const buf *in, const run *first, run *r, buf *keep)
{
    buf cur = {0};
    size_t at = first->err_at;
    buf_add(&cur, in->p, in->len);
    for (int round = 0; round < MAX_REQS; round++) {
        buf next = {0};
        inject_host(&cur, at, &next);
        buf_free(&cur);
        cur = next;
        run_free(r);
        run_nexus(cur.p, cur.len, r);
        if (r->final != F_REJECT || strcmp(r->err.reason, NO_HOST) != 0)
            break;
        at = r->err_at;
    }
    *keep = cur; /* r points into it */
}

/* ---- the test ------------------------------------------------------------------------------ */

typedef struct totals {
    size_t run, accepted, rejected, stricter, host_replays, skipped_pause, skipped_body, failures;
} totals;

static const allow_entry *find_allow(const tcase *tc)
{
    for (const allow_entry *a = allow_list; a->file; a++) {
        if (strcmp(a->file, tc->file) == 0 && strcmp(a->title, tc->title) == 0)
            return a;
    }
    return NULL;
}

static void failure(totals *t, const tcase *tc, const char *fmt, ...)
{
    va_list ap;
    t->failures++;
    fprintf(stderr, "FAIL %s:%d \"%s\" [%s]: ", tc->file, tc->line, tc->title, tc->type);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void check_case(const tcase *tc, totals *t, bool *allow_used)
{
    buf in = {0};
    expect *e = calloc(1, sizeof *e);
    run *r = calloc(1, sizeof *r);
    run *r2 = calloc(1, sizeof *r2);
    buf keep = {0};
    char why[512];

    cr_assert(e && r && r2);
    decode_input(&tc->raw, &in);
    parse_log(tc, &in, e);
    run_nexus(in.p, in.len, r);
    t->run++;

    bool lenient = strncmp(tc->type, "request-lenient-", 16) == 0;
    bool llhttp_rejects = e->error;
    const allow_entry *a = find_allow(tc);
    if (a)
        allow_used[a - allow_list] = true;

    if (rejected(r))
        t->rejected++;
    else
        t->accepted++;

    if (r->broken[0]) {
        failure(t, tc, "parser invariant: %s", r->broken);
        goto done;
    }
    if (lenient || llhttp_rejects) {
        if (a)
            failure(t, tc, "allow-listed, but llhttp rejects this case too");
        if (!rejected(r)) {
            failure(t, tc, "llhttp %s, Nexus accepts (%s)",
                    lenient ? "accepts it only in a lenient mode" : "rejects it",
                    final_name[r->final]);
            goto done;
        }
        if (lenient)
            goto done;
        if (r->nheads > e->nheads) {
            failure(t, tc, "Nexus accepted %zu heads, llhttp only %zu", r->nheads, e->nheads);
            goto done;
        }
        if (!common_agree(e, r, why, sizeof why))
            failure(t, tc, "%s", why);
        if (r->final == F_REJECT && strcmp(r->err.reason, NO_HOST) == 0) {
            t->host_replays++;
            replay_with_host(&in, r, r2, &keep);
            if (r2->broken[0])
                failure(t, tc, "with Host: parser invariant: %s", r2->broken);
            else if (!rejected(r2))
                failure(t, tc, "with Host added, Nexus accepts what llhttp rejects");
            else if (r2->nheads > e->nheads)
                failure(t, tc, "with Host added, Nexus accepted %zu heads, llhttp %zu", r2->nheads,
                        e->nheads);
            else if (!common_agree(e, r2, why, sizeof why))
                failure(t, tc, "with Host added: %s", why);
        }
        goto done;
    }

    /* llhttp accepts */
    if (!rejected(r)) {
        if (a)
            failure(t, tc, "stale allow-list entry: Nexus accepts this case");
        if (!full_agree(e, r, why, sizeof why))
            failure(t, tc, "%s", why);
        goto done;
    }
    const char *reason = r->final == F_CLOSED_DATA ? "data after Connection: close" : r->err.reason;
    if (!a) {
        failure(t, tc, "Nexus rejects (%d \"%s\" at %zu) what llhttp accepts; not allow-listed",
                r->err.status, reason, r->err.offset);
        goto done;
    }
    if (strcmp(reason, a->reason) != 0) {
        failure(t, tc, "rejected for \"%s\", allow-list says \"%s\"", reason, a->reason);
        goto done;
    }
    t->stricter++;
    if (!common_agree(e, r, why, sizeof why))
        failure(t, tc, "%s", why);
    if (strcmp(reason, NO_HOST) == 0) {
        t->host_replays++;
        replay_with_host(&in, r, r2, &keep);
        if (r2->broken[0]) {
            failure(t, tc, "with Host: parser invariant: %s", r2->broken);
        } else if (a->host_reason) {
            const char *rr =
                r2->final == F_CLOSED_DATA ? "data after Connection: close" : r2->err.reason;
            if (!rejected(r2) || strcmp(rr, a->host_reason) != 0)
                failure(t, tc, "with Host added: expected \"%s\", got %s \"%s\"", a->host_reason,
                        final_name[r2->final], rejected(r2) ? rr : "");
        } else if (rejected(r2)) {
            failure(t, tc, "with Host added, Nexus still rejects: %d \"%s\"", r2->err.status,
                    r2->final == F_CLOSED_DATA ? "data after Connection: close" : r2->err.reason);
        } else if (!full_agree(e, r2, why, sizeof why)) {
            failure(t, tc, "with Host added: %s", why);
        }
    } else if (a->host_reason) {
        failure(t, tc, "allow-list has a Host replay reason but Nexus gives \"%s\"", reason);
    }

done:
    run_free(r);
    run_free(r2);
    free(r);
    free(r2);
    expect_free(e);
    free(e);
    buf_free(&in);
    buf_free(&keep);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

Test(llhttp_conformance, request_cases)
{
    const char *dir = getenv("NX_CONFORMANCE_DIR");
    if (dir == NULL || dir[0] == '\0')
        dir = "../shared/conformance/llhttp/request";
    DIR *d = opendir(dir);
    cr_assert_not_null(d,
                       "conformance cases not found at %s (run from the repo root, or set "
                       "NX_CONFORMANCE_DIR)",
                       dir);

    char *names[64];
    size_t nn = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l > 3 && strcmp(de->d_name + l - 3, ".md") == 0 && nn < 64)
            names[nn++] = strdup(de->d_name);
    }
    closedir(d);
    cr_assert_gt(nn, 0, "no .md case files in %s", dir);
    qsort(names, nn, sizeof names[0], cmp_names);

    totals t = {0};
    size_t nallow = sizeof allow_list / sizeof allow_list[0];
    bool *allow_used = calloc(nallow, sizeof *allow_used);
    cr_assert_not_null(allow_used);

    for (size_t f = 0; f < nn; f++) {
        tcase *cases;
        size_t nc = read_cases(dir, names[f], &cases);
        for (size_t i = 0; i < nc; i++) {
            tcase *tc = &cases[i];
            /* Not replayable on a request parser: a "pause" case tests llhttp's callback
             * pausing API (the same request is parsed unpaused elsewhere), and "skipBody"
             * has the caller declare that a message has no body despite Content-Length,
             * which only a client reading a response to HEAD may do. */
            if (tc->pause) {
                t.skipped_pause++;
            } else if (tc->skip_body) {
                t.skipped_body++;
            } else if (strncmp(tc->type, "request", 7) != 0) {
                failure(&t, tc, "unknown case type");
            } else {
                check_case(tc, &t, allow_used);
            }
            buf_free(&tc->raw);
            buf_free(&tc->log);
        }
        free(cases);
        free(names[f]);
    }
    for (size_t i = 0; i + 1 < nallow; i++) {
        if (!allow_used[i]) {
            t.failures++;
            fprintf(stderr, "FAIL allow-list entry matches no case: %s \"%s\"\n",
                    allow_list[i].file, allow_list[i].title);
        }
    }
    free(allow_used);

    printf("llhttp conformance: %zu cases run, %zu accepted, %zu rejected, %zu stricter by "
           "allow-list (%zu replayed with Host added); skipped %zu pause + %zu skipBody\n",
           t.run, t.accepted, t.rejected, t.stricter, t.host_replays, t.skipped_pause,
           t.skipped_body);
    fflush(stdout);
    cr_assert_eq(t.failures, 0, "%zu conformance failures (see stderr)", t.failures);
}
