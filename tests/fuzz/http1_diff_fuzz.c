/*
 * http1_diff_fuzz.c - differential libFuzzer target: Nexus's HTTP/1.1 parser against llhttp.
 *
 * Nexus may refuse what llhttp takes (it is stricter by design), but whatever Nexus accepts,
 * llhttp in its strict default mode must accept too and read the same way: the same method,
 * target and fields, and above all the same end of the message. Two parsers that disagree on
 * where a request ends are exactly what a smuggling attack needs, so that is the main check.
 *
 * llhttp's C sources ship in Debian's node-llhttp package (apt-get install node-llhttp):
 *
 *   clang -Iinclude -Isrc -I/usr/share/include/llhttp -D_GNU_SOURCE -std=c11 -O1 -g \
 *       -fsanitize=fuzzer,address,undefined -o build/fuzz/http1_diff_fuzz \
 *       tests/fuzz/http1_diff_fuzz.c src/http/http1_parse.c \
 *       /usr/share/llhttp/llhttp.c /usr/share/llhttp/api.c /usr/share/llhttp/http.c
 *
 * Known, intended differences are skipped where noted below; anything else aborts.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>

#include "http/http1_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXF 128

typedef struct span {
    const char *p;
    size_t len;
} span;

typedef struct seen {
    const char *base;
    span method, url, names[MAXF], values[MAXF], body;
    size_t nfields;
    bool field_open;
    bool head_done;
    const char *msg_end; /* where the first message ended, or NULL */
    uint64_t body_len;
    char body_copy[65536];
    bool body_overflow;
} seen;

static seen S;

static void grow(span *s, const char *at, size_t len)
{
    if (s->p == NULL)
        s->p = at;
    s->len = (size_t)(at + len - s->p);
}

static int on_method(llhttp_t *p, const char *at, size_t len)
{
    (void)p;
    grow(&S.method, at, len);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    (void)p;
    grow(&S.url, at, len);
    return 0;
}

static int on_field(llhttp_t *p, const char *at, size_t len)
{
    (void)p;
    if (S.head_done)
        return 0; /* a trailer field */
    if (!S.field_open) {
        if (S.nfields == MAXF)
            return -1;
        S.nfields++;
        S.field_open = true;
    }
    grow(&S.names[S.nfields - 1], at, len);
    return 0;
}

static int on_value(llhttp_t *p, const char *at, size_t len)
{
    (void)p;
    if (S.head_done)
        return 0;
    grow(&S.values[S.nfields - 1], at, len);
    return 0;
}

static int on_field_complete(llhttp_t *p)
{
    (void)p;
    S.field_open = false;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    (void)p;
    S.head_done = true;
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    (void)p;
    if (S.body_len + len <= sizeof S.body_copy)
        memcpy(S.body_copy + S.body_len, at, len);
    else
        S.body_overflow = true;
    S.body_len += len;
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    (void)p;
    return HPE_PAUSED; /* stop right after the first message; its end is the error pos */
}

static bool ci_eq(const char *a, size_t alen, const char *lit)
{
    size_t n = strlen(lit);
    if (alen != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = a[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        if (c != lit[i])
            return false;
    }
    return true;
}

static bool span_eq(span s, nx_str n)
{
    return s.len == n.len && (n.len == 0 || memcmp(s.p, n.ptr, n.len) == 0);
}

static void diverge(const char *what)
{
    fprintf(stderr, "nexus/llhttp divergence: %s\n", what);
    abort();
}

/* Methods llhttp 8.1 parses on an HTTP/1.x line; Nexus also knows the rest of the IANA list. */
static bool llhttp_knows(nx_str m)
{
    static const char *const known[] = {
        "DELETE",     "GET",      "HEAD",       "POST",     "PUT",    "CONNECT",   "OPTIONS",
        "TRACE",      "COPY",     "LOCK",       "MKCOL",    "MOVE",   "PROPFIND",  "PROPPATCH",
        "SEARCH",     "UNLOCK",   "BIND",       "REBIND",   "UNBIND", "ACL",       "REPORT",
        "MKACTIVITY", "CHECKOUT", "MERGE",      "M-SEARCH", "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE",
        "PATCH",      "PURGE",    "MKCALENDAR", "LINK",     "UNLINK", "SOURCE",
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strlen(known[i]) == m.len && memcmp(known[i], m.ptr, m.len) == 0)
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static nx_h1_request req;
    const char *in = (const char *)data;
    nx_h1_error err;

    int r = nx_h1_parse_head(in, size, NULL, &req, &err);
    if (r <= 0 || !llhttp_knows(req.method))
        return 0;

    /* Intended differences (RFC 9110 §8.6 lets a recipient accept a Content-Length list of
     * equal values, or repeated equal fields; llhttp refuses both). */
    size_t ncl = 0;
    for (size_t i = 0; i < req.nheaders; i++) {
        nx_str n = req.headers[i].name, v = req.headers[i].value;
        if (ci_eq(n.ptr, n.len, "content-length")) {
            ncl++;
            if (memchr(v.ptr, ',', v.len))
                return 0;
            /* llhttp 8.1 refuses OWS tabs around the number; llhttp 9 takes them ("Tabs in
             * Content-Length (surrounding)" in its tests), as RFC 9110 §5.5 says. */
            const char *raw = n.ptr + n.len + 1, *end = v.ptr + v.len;
            while (*end != '\r')
                end++;
            if (memchr(raw, '\t', (size_t)(end - raw)))
                return 0;
        }
    }
    if (ncl > 1)
        return 0;

    memset(&S, 0, sizeof S);
    S.base = in;
    llhttp_settings_t st;
    llhttp_settings_init(&st);
    st.on_method = on_method;
    st.on_url = on_url;
    st.on_header_field = on_field;
    st.on_header_value = on_value;
    st.on_header_field_complete = on_field_complete;
    st.on_headers_complete = on_headers_complete;
    st.on_body = on_body;
    st.on_message_complete = on_message_complete;
    llhttp_t p;
    llhttp_init(&p, HTTP_REQUEST, &st);
    llhttp_errno_t le = llhttp_execute(&p, in, size);
    const char *epos = llhttp_get_error_pos(&p);

    /* 1. llhttp must accept the head Nexus accepted. */
    if (!S.head_done) {
        fprintf(stderr, "llhttp: %s (%s) at %td\n", llhttp_errno_name(le),
                llhttp_get_error_reason(&p), epos ? epos - in : -1);
        diverge("Nexus accepted a head llhttp rejects");
    }

    /* 2. ... and read it the same way. */
    if (!span_eq(S.method, req.method))
        diverge("method");
    if (!span_eq(S.url, req.target))
        diverge("target");
    if (S.nfields != req.nheaders)
        diverge("number of fields");
    for (size_t i = 0; i < S.nfields; i++) {
        span v = S.values[i];
        while (v.len > 0 && (v.p[v.len - 1] == ' ' || v.p[v.len - 1] == '\t'))
            v.len--;
        if (!span_eq(S.names[i], req.headers[i].name))
            diverge("field name");
        if (v.len != req.headers[i].value.len ||
            (v.len && memcmp(v.p, req.headers[i].value.ptr, v.len)))
            diverge("field value");
    }
    if (req.chunked != ((p.flags & F_CHUNKED) != 0))
        diverge("chunked");

    /* 3. The message ends at the same byte. A CONNECT or upgrade request ends at its head
     * for llhttp (the rest is tunnel data), as it does for the server. */
    bool tunnel = req.upgrade || (req.method.len == 7 && !memcmp(req.method.ptr, "CONNECT", 7));
    if (tunnel)
        return 0;
    const char *nx_end = NULL;
    static char body[1 << 16];
    size_t blen = 0;
    if (req.chunked) {
        nx_h1_chunked c;
        size_t used;
        nx_h1_chunked_init(&c);
        if (size - (size_t)r > sizeof body)
            return 0;
        int cr = nx_h1_chunked_decode(&c, in + r, size - (size_t)r, &used, body, &blen, &err);
        if (cr == NX_OK)
            nx_end = in + r + used;
        else if (cr == NX_H1_ERROR)
            return 0; /* Nexus refuses the body; llhttp may be laxer */
    } else if (req.content_length <= 0) {
        nx_end = in + r;
    } else if ((uint64_t)req.content_length <= size - (size_t)r) {
        nx_end = in + r + req.content_length;
        blen = (size_t)req.content_length;
        if (blen <= sizeof body)
            memcpy(body, in + r, blen);
    }

    bool ll_done = le == HPE_PAUSED;
    /* llhttp 8.1 (Debian's) refuses quoted-pair in a quoted chunk-ext value, which RFC 9112
     * §7.1.1 allows and llhttp 9 accepts ("Chunk extensions quoting" in its tests). */
    if (!ll_done && le == HPE_STRICT && strstr(llhttp_get_error_reason(&p), "quoted value"))
        return 0;
    /* Chunk extensions: RFC 9112 §7.1.1 allows BWS around ";" and "=" (and RFC 9110 §5.6.3
     * says a recipient MUST accept it), and any number of name[=value] pairs; llhttp 8.1
     * refuses both BWS and a second extension after a valued one (llhttp 9 takes the
     * latter: "Chunk extensions" in its tests). Extensions never move a chunk's end. */
    if (!ll_done && epos > in + r && epos < in + size &&
        (le == HPE_STRICT || le == HPE_INVALID_CHUNK_SIZE)) {
        const char *ls = epos;
        while (ls > in + r && ls[-1] != '\n')
            ls--;
        size_t n = (size_t)(epos - ls) + 1;
        if (memchr(ls, ';', n) || memchr(ls, ' ', n) || memchr(ls, '\t', n))
            return 0;
    }
    /* llhttp applies header rules to trailer fields (a trailer Transfer-Encoding or
     * Content-Length is an error there); Nexus checks their syntax and drops them, as
     * RFC 9110 §6.5.1 lets it, so they cannot change the framing already decided. */
    if (!ll_done && epos > in + r &&
        (le == HPE_INVALID_TRANSFER_ENCODING || le == HPE_UNEXPECTED_CONTENT_LENGTH ||
         le == HPE_INVALID_CONTENT_LENGTH))
        return 0;
    if (nx_end != NULL && !ll_done) {
        fprintf(stderr, "llhttp: %s (%s)\n", llhttp_errno_name(le), llhttp_get_error_reason(&p));
        diverge("Nexus completed a message llhttp did not");
    }
    if (nx_end == NULL && ll_done)
        diverge("llhttp completed a message Nexus is still reading");
    if (nx_end != NULL && epos != nx_end) {
        fprintf(stderr, "Nexus end %td, llhttp end %td\n", nx_end - in, epos - in);
        diverge("the message ends at different bytes");
    }
    if (nx_end != NULL && !S.body_overflow && blen <= sizeof body &&
        (S.body_len != blen || memcmp(S.body_copy, body, blen) != 0))
        diverge("body bytes");
    return 0;
}
