/*
 * http1_parse.c - the HTTP/1.1 request-head parser and chunked body decoder (RFC 9112).
 *
 * The head parser is one forward pass over the bytes with no state kept between calls: the
 * connection code calls it again from the first byte whenever more bytes arrive, so the common
 * case (a complete 200-500 byte head in one read) must be cheap, and the rare case (a head
 * split over several reads) costs one extra pass per read. Each line is scanned once: bytes
 * are classified through one 256-entry table, header values eight bytes at a time.
 *
 * Every decision about where a request ends is made here, so the parser refuses anything
 * that two HTTP implementations could read differently (RFC 9112 §11.2, request smuggling):
 * bare CR or LF, obs-fold, whitespace before a colon, conflicting or malformed Content-Length,
 * Transfer-Encoding that does not end in exactly one "chunked", both framing headers at once.
 *
 * Limits are checked in byte order: when a line has already grown past its limit the answer
 * is an error even if its end has not arrived, so a client cannot hold a worker's buffer by
 * trickling an endless line. Feeding a longer prefix of the same bytes never turns an error
 * into success, which the unit tests check at every split point.
 */
#include "http1_parse.h"

#include <string.h>

/* Byte classes; one table lookup answers "may this byte appear here". */
enum {
    C_TCHAR = 0x01,  /* token (RFC 9110 §5.6.2): methods, field names, codings */
    C_TARGET = 0x02, /* request-target: VCHAR except '#' (a fragment is never sent) */
    C_VALUE = 0x04,  /* field-content: VCHAR, obs-text, SP, HTAB */
    C_HOST = 0x08,   /* reg-name (RFC 3986): unreserved, sub-delims, '%' */
    C_HEX = 0x10,
    C_QDTEXT = 0x20, /* quoted-string text (RFC 9110 §5.6.4) */
};

/* Generated from the ABNF of RFC 9110 §5.6 and RFC 3986 §3.2.2; bytes 0x80-0xff are obs-text. */
static const unsigned char cls[256] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 00..07 */
    0x00, 0x24, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 08..0f */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 10..17 */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 18..1f */
    0x24, 0x2f, 0x06, 0x25, 0x2f, 0x2f, 0x2f, 0x2f, /* 20..'  */
    0x2e, 0x2e, 0x2f, 0x2f, 0x2e, 0x2f, 0x2f, 0x26, /* (..slash */
    0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, /* 0..7 */
    0x3f, 0x3f, 0x26, 0x2e, 0x26, 0x2e, 0x26, 0x26, /* 8..? */
    0x26, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x2f, /* @..G */
    0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, /* H..O */
    0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, /* P..W */
    0x2f, 0x2f, 0x2f, 0x26, 0x06, 0x26, 0x27, 0x2f, /* X.._ */
    0x27, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x2f, /* `..g */
    0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, /* h..o */
    0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, /* p..w */
    0x2f, 0x2f, 0x2f, 0x26, 0x27, 0x26, 0x2f, 0x00, /* x..7f */
    0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, /* 80..87 */
    0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, /* 88..8f */
    0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, /* 90..97 */
    0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, /* 98..9f */
    0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, /* a0..a7 */
    0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, /* a8..af */
    0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, /* b0..b7 */
    0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, /* b8..bf */
    0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, /* c0..c7 */
    0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, /* c8..cf */
    0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, /* d0..d7 */
    0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, /* d8..df */
    0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, /* e0..e7 */
    0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, /* e8..ef */
    0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, /* f0..f7 */
    0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, /* f8..ff */
};

/* Internal result of a line scan: the line holds more content than its limit allows. */
#define LIMIT_HIT (-3)

/* Chunk-size line (size and extensions) bound: extensions carry nothing Nexus uses, and an
 * unbounded line would let a client make the server read forever for one byte of data. */
#define CHUNK_LINE_MAX 4096
#define TRAILER_MAX 8192

static int fail(nx_h1_error *err, int status, size_t off, const char *reason)
{
    if (err) {
        err->status = status;
        err->offset = off;
        err->reason = reason;
    }
    return NX_H1_ERROR;
}

static inline bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/*
 * Case-insensitive match of a field name or value against a lower-case literal. OR-ing 0x20
 * folds only letters here: every other byte that could alias a literal byte this way (CR for
 * '-', control bytes for digits) has been rejected by the byte classes before we compare.
 */
static inline bool ci_eq(const unsigned char *a, const char *lower, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((a[i] | 0x20) != (unsigned char)lower[i])
            return false;
    }
    return true;
}

/* First index at which a line starting at ls may no longer hold content. */
static inline size_t cap_of(size_t ls, size_t max, size_t n)
{
    return max < n - ls ? ls + max : n;
}

/*
 * A scan over a line's content stopped at q, which is at most min(n, cap). Returns 0 when
 * s[q] is a delimiter to examine, NX_H1_INCOMPLETE when the visible bytes ran out, or
 * LIMIT_HIT when the byte at the limit is content: the line is already too long, whatever
 * comes next. A CR or LF at the limit ends the line exactly at its maximum and is examined.
 */
static inline int stop_kind(const unsigned char *s, size_t q, size_t n, size_t cap)
{
    if (q >= n)
        return NX_H1_INCOMPLETE;
    if (q >= cap && s[q] != '\r' && s[q] != '\n')
        return LIMIT_HIT;
    return 0;
}

/* SWAR helpers: true when some byte of x is below b (b <= 0x80) / equal to zero. Exact as a
 * yes/no answer even though the per-byte flags above the first hit may be noise. */
#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

static inline uint64_t has_below(uint64_t x, unsigned b)
{
    return (x - ONES * b) & ~x & HIGHS;
}

static inline uint64_t has_zero(uint64_t x)
{
    return (x - ONES) & ~x & HIGHS;
}

/*
 * Index of the first byte in s[q..b) that is not field-content (VCHAR, obs-text, SP, HTAB).
 * Values are most of a head's bytes, so they are checked a word at a time; a word holding a
 * control byte (usually the CR that ends the value) or DEL is rescanned bytewise.
 */
static size_t scan_value(const unsigned char *s, size_t q, size_t b)
{
    while (q + 8 <= b) {
        uint64_t x;
        memcpy(&x, s + q, 8);
        if ((has_below(x, 0x20) | has_zero(x ^ (ONES * 0x7f))) == 0) {
            q += 8;
            continue;
        }
        for (size_t e = q + 8; q < e; q++) {
            if (!(cls[s[q]] & C_VALUE))
                return q;
        }
    }
    while (q < b && (cls[s[q]] & C_VALUE))
        q++;
    return q;
}

/* As scan_value for request-target bytes: VCHAR except '#'. The SP after the target (or a
 * stray byte) stops the word loop; the byte loop finds it. */
static size_t scan_target(const unsigned char *s, size_t q, size_t b)
{
    while (q + 8 <= b) {
        uint64_t x;
        memcpy(&x, s + q, 8);
        if ((has_below(x, 0x21) | (x & HIGHS) | has_zero(x ^ (ONES * 0x7f)) |
             has_zero(x ^ (ONES * '#'))) != 0)
            break;
        q += 8;
    }
    while (q < b && (cls[s[q]] & C_TARGET))
        q++;
    return q;
}

static inline size_t scan_class(const unsigned char *s, size_t q, size_t b, unsigned c)
{
    /* Four lookups per bound check: field names are the bulk of a head after values. */
    while (q + 4 <= b) {
        if (!(cls[s[q]] & c))
            return q;
        if (!(cls[s[q + 1]] & c))
            return q + 1;
        if (!(cls[s[q + 2]] & c))
            return q + 2;
        if (!(cls[s[q + 3]] & c))
            return q + 3;
        q += 4;
    }
    while (q < b && (cls[s[q]] & c))
        q++;
    return q;
}

/*
 * Methods are case-sensitive (RFC 9110 §9.1). Known: the IANA HTTP Method Registry, plus the
 * methods llhttp accepts with HTTP/1.x (WebDAV/UPnP/Icecast extras). A well-formed token that
 * is not listed gets 501, which tells a client the method exists nowhere on this server.
 */
static bool method_known(const unsigned char *m, size_t len)
{
#define M(lit) (memcmp(m, lit, sizeof(lit) - 1) == 0)
    switch (len) {
    case 3: return M("GET") || M("PUT") || M("ACL") || M("PRI");
    case 4:
        return M("POST") || M("HEAD") || M("COPY") || M("LOCK") || M("MOVE") || M("BIND") ||
               M("LINK");
    case 5:
        return M("PATCH") || M("TRACE") || M("MKCOL") || M("MERGE") || M("PURGE") || M("LABEL") ||
               M("QUERY");
    case 6:
        return M("DELETE") || M("SEARCH") || M("UNLOCK") || M("REBIND") || M("UNBIND") ||
               M("REPORT") || M("NOTIFY") || M("UNLINK") || M("SOURCE") || M("UPDATE");
    case 7: return M("OPTIONS") || M("CONNECT") || M("CHECKIN");
    case 8: return M("PROPFIND") || M("CHECKOUT") || M("M-SEARCH");
    case 9: return M("PROPPATCH") || M("SUBSCRIBE");
    case 10: return M("MKACTIVITY") || M("MKCALENDAR") || M("UNCHECKOUT") || M("ORDERPATCH");
    case 11: return M("UNSUBSCRIBE") || M("MKWORKSPACE");
    case 13: return M("MKREDIRECTREF");
    case 15: return M("VERSION-CONTROL");
    case 16: return M("BASELINE-CONTROL");
    case 17: return M("UPDATEREDIRECTREF");
    default: return false;
    }
#undef M
}

/*
 * uri-host [ ":" port ] (RFC 3986 §3.2.2-3.2.3), used for Host and for the authority of a
 * target. The host may not be empty (RFC 9110 §4.2.1: an http URI with an empty host is
 * invalid) and userinfo is refused with '@' never being a reg-name byte, so "Host: a@b" cannot
 * be read as host "b" by one component and as "a@b" by another.
 */
static bool valid_authority(const unsigned char *v, size_t len, bool need_port)
{
    size_t i = 0;

    if (len == 0)
        return false;
    if (v[0] == '[') {
        /* IP-literal: hex digits, ':' and '.' (IPv6 with optional dotted tail). */
        for (i = 1; i < len && v[i] != ']'; i++) {
            if (!(cls[v[i]] & C_HEX) && v[i] != ':' && v[i] != '.')
                return false;
        }
        if (i >= len || i < 3)
            return false;
        i++;
    } else {
        for (; i < len && v[i] != ':'; i++) {
            if (!(cls[v[i]] & C_HOST))
                return false;
            if (v[i] == '%') {
                if (len - i < 3 || !(cls[v[i + 1]] & C_HEX) || !(cls[v[i + 2]] & C_HEX))
                    return false;
                i += 2;
            }
        }
        if (i == 0)
            return false;
    }
    if (i == len)
        return !need_port;
    if (v[i] != ':')
        return false;
    i++;
    if (i == len)
        return !need_port; /* "host:" is allowed by RFC 3986: port = *DIGIT */
    if (len - i > 5)
        return false;
    unsigned port = 0;
    for (; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        port = port * 10 + (unsigned)(v[i] - '0');
    }
    return port <= 65535;
}

/* Framing and connection facts collected while the fields go by. */
typedef struct fstate {
    size_t host_count;
    nx_str host;
    bool cl_seen;
    int64_t cl;
    bool te_seen;
    bool te_chunked;      /* chunked appeared */
    bool te_last_chunked; /* the final coding so far is chunked */
    bool te_other;        /* a coding other than chunked appeared */
    size_t te_off;
    bool conn_close, conn_keep_alive, conn_upgrade;
    bool has_upgrade;
    bool expect_100;
} fstate;

/*
 * Content-Length = 1*DIGIT; a list of equal values ("5, 5", from a proxy that merged two
 * identical fields) is read as one (RFC 9110 §8.6). Anything else is refused rather than
 * interpreted: a sign, a blank, an empty element or a second different value each has been
 * read differently by some proxy, and the difference is where a smuggled request hides.
 */
static const char *parse_content_length(const unsigned char *v, size_t len, int64_t *out)
{
    size_t i = 0;
    int64_t first = -1;

    for (;;) {
        size_t a = i;
        int64_t n = 0;
        for (; i < len && v[i] >= '0' && v[i] <= '9'; i++) {
            int d = v[i] - '0';
            if (n > (INT64_MAX - d) / 10)
                return "Content-Length overflows";
            n = n * 10 + d;
        }
        if (i == a)
            return "invalid Content-Length";
        if (first >= 0 && n != first)
            return "conflicting Content-Length values";
        first = n;
        while (i < len && is_ows(v[i]))
            i++;
        if (i == len)
            break;
        if (v[i] != ',')
            return "invalid Content-Length";
        i++;
        while (i < len && is_ows(v[i]))
            i++;
    }
    *out = first;
    return NULL;
}

/* token / quoted-string at v[i..len); returns the index after it, or 0 when malformed. */
static size_t skip_param_value(const unsigned char *v, size_t i, size_t len)
{
    if (i < len && v[i] == '"') {
        for (i++; i < len; i++) {
            if (v[i] == '"')
                return i + 1;
            if (v[i] == '\\') {
                if (++i >= len || !(cls[v[i]] & C_VALUE))
                    return 0;
            } else if (!(cls[v[i]] & C_QDTEXT)) {
                return 0;
            }
        }
        return 0;
    }
    size_t e = scan_class(v, i, len, C_TCHAR);
    return e > i ? e : 0;
}

/*
 * One Transfer-Encoding field: #transfer-coding (RFC 9112 §7). Fields are read in order as
 * one list (RFC 9110 §5.3). Empty list elements are refused although RFC 9110 §5.6.1 lets a
 * recipient skip them: "chunked," ends in an empty element for a parser that keeps it and in
 * chunked for one that skips it, and that disagreement decides where the body ends.
 */
static const char *parse_te(const unsigned char *v, size_t len, fstate *f)
{
    size_t i = 0;

    for (;;) {
        size_t a = i;
        i = scan_class(v, i, len, C_TCHAR);
        if (i == a)
            return "invalid Transfer-Encoding";
        bool chunked = i - a == 7 && ci_eq(v + a, "chunked", 7);
        if (chunked) {
            /* RFC 9112 §7: chunked at most once; a second one hides a body inside a body. */
            if (f->te_chunked)
                return "chunked applied more than once";
            f->te_chunked = true;
        } else {
            f->te_other = true;
        }
        f->te_last_chunked = chunked;
        while (i < len && is_ows(v[i]))
            i++;
        while (i < len && v[i] == ';') {
            /* chunked takes no parameters; "chunked;x=y" is not the coding we decode. */
            if (chunked)
                return "parameter on chunked";
            for (i++; i < len && is_ows(v[i]); i++) {
            }
            size_t b = scan_class(v, i, len, C_TCHAR);
            if (b == i)
                return "invalid Transfer-Encoding";
            for (i = b; i < len && is_ows(v[i]); i++) {
            }
            if (i >= len || v[i] != '=')
                return "invalid Transfer-Encoding";
            for (i++; i < len && is_ows(v[i]); i++) {
            }
            i = skip_param_value(v, i, len);
            if (i == 0)
                return "invalid Transfer-Encoding";
            while (i < len && is_ows(v[i]))
                i++;
        }
        if (i == len)
            return NULL;
        if (v[i] != ',')
            return "invalid Transfer-Encoding";
        for (i++; i < len && is_ows(v[i]); i++) {
        }
    }
}

/*
 * Connection = #connection-option. Only close, keep-alive and upgrade mean anything to the
 * server; other options (hop-by-hop field names) and empty elements are skipped.
 */
static void parse_connection(const unsigned char *v, size_t len, fstate *f)
{
    size_t i = 0;

    while (i < len) {
        while (i < len && (is_ows(v[i]) || v[i] == ','))
            i++;
        size_t a = i;
        while (i < len && v[i] != ',')
            i++;
        size_t e = i;
        while (e > a && is_ows(v[e - 1]))
            e--;
        size_t n = e - a;
        if (n == 5 && ci_eq(v + a, "close", 5))
            f->conn_close = true;
        else if (n == 10 && ci_eq(v + a, "keep-alive", 10))
            f->conn_keep_alive = true;
        else if (n == 7 && ci_eq(v + a, "upgrade", 7))
            f->conn_upgrade = true;
    }
}

/* Expect = #expectation; only 100-continue is defined (RFC 9110 §10.1.1). */
static bool expects_continue(const unsigned char *v, size_t len)
{
    size_t i = 0;

    while (i < len) {
        while (i < len && (is_ows(v[i]) || v[i] == ','))
            i++;
        size_t a = i;
        while (i < len && v[i] != ',')
            i++;
        size_t e = i;
        while (e > a && is_ows(v[e - 1]))
            e--;
        if (e - a == 12 && ci_eq(v + a, "100-continue", 12))
            return true;
    }
    return false;
}

/*
 * Reacts to the fields that decide framing and connection handling. Returns NX_H1_ERROR with
 * *err set, or 0. Length-first dispatch keeps the cost for ordinary fields at one switch.
 */
static int special_field(size_t ls, nx_str name, nx_str value, nx_str raw, int version, fstate *f,
                         nx_h1_error *err)
{
    const unsigned char *nm = (const unsigned char *)name.ptr;
    const unsigned char *v = (const unsigned char *)value.ptr;
    const char *why;
    int64_t cl;

    switch (name.len) {
    case 4:
        if (!ci_eq(nm, "host", 4))
            return 0;
        /* RFC 9112 §3.2: two Host lines, or an unusable one, let a proxy and Nexus pick
         * different virtual hosts for the same request. */
        if (++f->host_count > 1)
            return fail(err, 400, ls, "more than one Host header");
        if (!valid_authority(v, value.len, false))
            return fail(err, 400, ls, "invalid Host header");
        f->host = value;
        return 0;
    case 6:
        if (ci_eq(nm, "expect", 6) && expects_continue(v, value.len))
            f->expect_100 = true;
        return 0;
    case 7:
        if (ci_eq(nm, "upgrade", 7) && value.len > 0)
            f->has_upgrade = true;
        return 0;
    case 10:
        if (ci_eq(nm, "connection", 10))
            parse_connection(v, value.len, f);
        return 0;
    case 14:
        if (!ci_eq(nm, "content-length", 14))
            return 0;
        /* RFC 9112 §6.3: with both framing headers one hop may use either; refuse. */
        if (f->te_seen)
            return fail(err, 400, ls, "Content-Length with Transfer-Encoding");
        why = parse_content_length(v, value.len, &cl);
        if (why)
            return fail(err, 400, ls, why);
        if (f->cl_seen && cl != f->cl)
            return fail(err, 400, ls, "conflicting Content-Length values");
        f->cl_seen = true;
        f->cl = cl;
        return 0;
    case 17:
        if (!ci_eq(nm, "transfer-encoding", 17))
            return 0;
        if (f->cl_seen)
            return fail(err, 400, ls, "Content-Length with Transfer-Encoding");
        /* RFC 9112 §6.1: an HTTP/1.0 hop may not understand chunked and would read the
         * body differently; the framing of such a message is faulty by definition. */
        if (version == 10)
            return fail(err, 400, ls, "Transfer-Encoding in HTTP/1.0");
        /* HTAB is OWS, but parsers disagree on it exactly here (llhttp 8 and nginx do not
         * trim it from "chunked\t"): one hop's chunked body is another's unknown coding.
         * No client needs a tab in this field, so it is refused rather than trimmed. */
        if (memchr(raw.ptr, '\t', raw.len))
            return fail(err, 400, ls, "tab in Transfer-Encoding");
        f->te_seen = true;
        f->te_off = ls;
        why = parse_te(v, value.len, f);
        if (why)
            return fail(err, 400, ls, why);
        return 0;
    default: return 0;
    }
}

/*
 * Splits the request-target into path and query, checking that its form matches the method
 * (RFC 9112 §3.2): authority-form only and always for CONNECT, asterisk-form only for
 * OPTIONS, otherwise origin-form or an http(s) absolute-form.
 */
static int parse_target(const unsigned char *s, size_t t0, size_t t1, bool connect, bool options,
                        nx_h1_request *req, nx_str *authority, nx_h1_error *err)
{
    const char *b = (const char *)s;
    size_t tlen = t1 - t0;

    req->target = (nx_str){b + t0, tlen};
    req->query = (nx_str){b + t1, 0};
    authority->len = 0;

    if (connect) {
        if (!valid_authority(s + t0, tlen, true))
            return fail(err, 400, t0, "CONNECT target is not host:port");
        req->path = req->target;
        return 0;
    }
    if (s[t0] == '*' && tlen == 1) {
        if (!options)
            return fail(err, 400, t0, "asterisk-form target outside OPTIONS");
        req->path = req->target;
        return 0;
    }

    size_t p0 = t0;
    if (s[t0] != '/') {
        /* absolute-form: only http and https name resources this server can hold. */
        size_t sch;
        if (tlen >= 7 && ci_eq(s + t0, "http", 4) && memcmp(s + t0 + 4, "://", 3) == 0)
            sch = 7;
        else if (tlen >= 8 && ci_eq(s + t0, "https", 5) && memcmp(s + t0 + 5, "://", 3) == 0)
            sch = 8;
        else
            return fail(err, 400, t0, "invalid request target");
        size_t a0 = t0 + sch, a1 = a0;
        while (a1 < t1 && s[a1] != '/' && s[a1] != '?')
            a1++;
        /* RFC 9110 §4.2.4: userinfo in a target is an error (it is how phishing URLs and
         * "host@evil" confusions are built). */
        if (memchr(s + a0, '@', a1 - a0))
            return fail(err, 400, a0, "userinfo in request target");
        if (!valid_authority(s + a0, a1 - a0, false))
            return fail(err, 400, a0, "invalid authority in request target");
        *authority = (nx_str){b + a0, a1 - a0};
        p0 = a1;
    }
    const unsigned char *qm = memchr(s + p0, '?', t1 - p0);
    size_t pe = qm ? (size_t)(qm - s) : t1;
    req->path = (nx_str){b + p0, pe - p0};
    if (qm)
        req->query = (nx_str){b + pe + 1, t1 - pe - 1};
    return 0;
}

/* Parses within s[0..n), n already cut at max_head (see nx_h1_parse_head). */
static int parse(const unsigned char *s, size_t n, const nx_h1_limits *lim, nx_h1_request *req,
                 nx_h1_error *err)
{
    const char *b = (const char *)s;
    size_t p = 0, q, cap, ls;
    int r;

    /* RFC 9112 §2.2: ignore empty lines before the request line (a client's stray CRLF
     * after a POST body). Only CRLF: a bare LF or CR here is as suspect as anywhere. */
    while (p < n && s[p] == '\r') {
        if (p + 1 >= n)
            return NX_H1_INCOMPLETE;
        if (s[p + 1] != '\n')
            return fail(err, 400, p + 1, "bare CR before request line");
        p += 2;
    }

    /* ---- request-line = method SP request-target SP HTTP-version CRLF ---- */
    ls = p;
    cap = cap_of(ls, lim->max_request_line, n);

    q = scan_class(s, p, cap, C_TCHAR);
    if ((r = stop_kind(s, q, n, cap)) != 0)
        return r == LIMIT_HIT ? fail(err, 414, q, "request line too long") : r;
    if (s[q] != ' ' || q == p) {
        if (q == p && s[q] == '\n')
            return fail(err, 400, q, "bare LF before request line");
        return fail(err, 400, q, "invalid method");
    }
    /* A well-formed but unknown method is answered 501 only once the whole head has
     * parsed: the answer can then name the path, and a malformed head still gets 400. */
    size_t unknown_method = method_known(s + p, q - p) ? 0 : p + 1;
    req->method = (nx_str){b + p, q - p};
    bool connect = q - p == 7 && memcmp(s + p, "CONNECT", 7) == 0;
    bool options = q - p == 7 && memcmp(s + p, "OPTIONS", 7) == 0;

    size_t t0 = q + 1;
    q = scan_target(s, t0, cap);
    if ((r = stop_kind(s, q, n, cap)) != 0)
        return r == LIMIT_HIT ? fail(err, 414, q, "request line too long") : r;
    /* One SP exactly: "GET  /" or "GET /a b HTTP/1.1" are where lenient parsers guess. */
    if (s[q] != ' ' || q == t0) {
        if (s[q] == '#')
            return fail(err, 400, q, "fragment in request target");
        if (s[q] == '\r' || s[q] == '\n')
            return fail(err, 400, q, "missing HTTP version");
        if (q == t0)
            return fail(err, 400, q, "invalid request target");
        return fail(err, 400, q, "invalid character in request target");
    }
    size_t t1 = q;

    /* HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive (RFC 9112 §2.3). */
    size_t v = t1 + 1;
    if (n - v >= 10 && v + 8 <= cap && memcmp(s + v, "HTTP/1.1\r\n", 10) == 0) {
        req->version = 11;
    } else {
        static const char pat[] = "HTTP/d.d";
        for (size_t k = 0; k < 8; k++) {
            size_t i = v + k;
            if (i >= n)
                return NX_H1_INCOMPLETE;
            if (i >= cap && s[i] != '\r' && s[i] != '\n')
                return fail(err, 414, i, "request line too long");
            bool ok = pat[k] == 'd' ? s[i] >= '0' && s[i] <= '9' : s[i] == pat[k];
            if (!ok)
                return fail(err, 400, i, "invalid HTTP version");
        }
        if (s[v + 5] != '1' || s[v + 7] > '1')
            return fail(err, 505, v, "HTTP version not supported");
        req->version = s[v + 7] == '1' ? 11 : 10;
        if (v + 8 >= n)
            return NX_H1_INCOMPLETE;
        if (s[v + 8] != '\r')
            return fail(err, 400, v + 8, "invalid HTTP version");
        if (v + 9 >= n)
            return NX_H1_INCOMPLETE;
        if (s[v + 9] != '\n')
            return fail(err, 400, v + 9, "bare CR in request line");
    }
    p = v + 10;

    nx_str authority;
    if (parse_target(s, t0, t1, connect, options, req, &authority, err) != 0)
        return NX_H1_ERROR;

    /* ---- *( field-line CRLF ) CRLF ---- */
    fstate f;
    memset(&f, 0, sizeof f);
    size_t maxh = lim->max_headers < NX_H1_MAX_HEADERS ? lim->max_headers : NX_H1_MAX_HEADERS;
    size_t nh = 0;

    for (;;) {
        ls = p;
        if (p >= n)
            return NX_H1_INCOMPLETE;
        unsigned char c = s[p];
        if (c == '\r') {
            if (p + 1 >= n)
                return NX_H1_INCOMPLETE;
            if (s[p + 1] != '\n')
                return fail(err, 400, p + 1, "bare CR in header section");
            p += 2;
            break;
        }
        if (!(cls[c] & C_TCHAR)) {
            /* RFC 9112 §5.2 / §2.2: a line starting with whitespace is obs-fold, or junk
             * between the request line and the fields; both are refused with 400 rather
             * than unfolded, so no hop can see a field that another hop glued away. */
            if (is_ows(c))
                return fail(err, 400, p,
                            nh == 0 ? "whitespace before first header" : "obsolete line folding");
            if (c == '\n')
                return fail(err, 400, p, "bare LF in header section");
            return fail(err, 400, p,
                        c == ':' ? "empty header name" : "invalid character in header name");
        }
        if (nh >= maxh)
            return fail(err, 431, p, "too many headers");

        cap = cap_of(ls, lim->max_field, n);
        q = scan_class(s, p, cap, C_TCHAR);
        if ((r = stop_kind(s, q, n, cap)) != 0)
            return r == LIMIT_HIT ? fail(err, 431, q, "header field too long") : r;
        if (s[q] != ':') {
            /* RFC 9112 §5.1: "Name : value" MUST be rejected; some hops strip the space
             * and some keep it in the name, seeing different fields. */
            if (is_ows(s[q]))
                return fail(err, 400, q, "whitespace before colon");
            return fail(err, 400, q, "invalid character in header name");
        }
        nx_str name = {b + p, q - p};

        size_t raw0 = ++q;
        while (q < cap && is_ows(s[q]))
            q++;
        size_t v0 = q;
        q = scan_value(s, q, cap);
        if ((r = stop_kind(s, q, n, cap)) != 0)
            return r == LIMIT_HIT ? fail(err, 431, q, "header field too long") : r;
        if (s[q] != '\r') {
            if (s[q] == '\n')
                return fail(err, 400, q, "bare LF in header value");
            return fail(err, 400, q, "invalid character in header value");
        }
        if (q + 1 >= n)
            return NX_H1_INCOMPLETE;
        if (s[q + 1] != '\n')
            return fail(err, 400, q + 1, "bare CR in header value");
        size_t v1 = q;
        while (v1 > v0 && is_ows(s[v1 - 1]))
            v1--;
        nx_str value = {b + v0, v1 - v0};
        req->headers[nh].name = name;
        req->headers[nh].value = value;
        nh++;
        nx_str raw = {b + raw0, q - raw0};
        if (special_field(ls, name, value, raw, req->version, &f, err) != 0)
            return NX_H1_ERROR;
        p = q + 2;
    }
    req->nheaders = nh;

    /* ---- the head is complete: whole-message rules ---- */
    if (f.host_count == 0 && req->version == 11)
        return fail(err, 400, p - 2, "missing Host header");
    if (f.te_seen) {
        /* RFC 9112 §6.3: unless chunked is last, the body's end cannot be known. */
        if (!f.te_last_chunked)
            return fail(err, 400, f.te_off, "Transfer-Encoding does not end in chunked");
        if (f.te_other)
            return fail(err, 501, f.te_off, "transfer coding not implemented");
    }
    /* A CONNECT request has no content (RFC 9110 §9.3.6): after it come tunnel bytes, so a
     * length on it leaves two readings of the same bytes. */
    if (connect && (f.te_seen || f.cl_seen))
        return fail(err, 400, p - 2, "CONNECT request with a body");

    req->content_length = f.cl_seen ? f.cl : -1;
    req->chunked = f.te_seen;
    req->keep_alive = !f.conn_close && (req->version == 11 || f.conn_keep_alive);
    /* RFC 9110 §7.8 and §10.1.1: Upgrade and 100-continue are ignored in HTTP/1.0. */
    req->upgrade = req->version == 11 && f.conn_upgrade && f.has_upgrade;
    req->expect_continue = req->version == 11 && f.expect_100;
    if (authority.len > 0)
        req->host = authority; /* RFC 9112 §3.2.2: the target's authority wins over Host */
    else if (f.host_count > 0)
        req->host = f.host;
    else
        req->host = (nx_str){b + p, 0};
    if (unknown_method)
        return fail(err, 501, unknown_method - 1, "method not implemented");
    return (int)p;
}

void nx_h1_limits_default(nx_h1_limits *lim)
{
    lim->max_request_line = 8192;
    lim->max_field = 8192;
    lim->max_head = 32768;
    lim->max_headers = NX_H1_MAX_HEADERS;
}

int nx_h1_parse_head(const char *buf, size_t len, const nx_h1_limits *lim, nx_h1_request *req,
                     nx_h1_error *err)
{
    nx_h1_limits def;

    if (lim == NULL) {
        nx_h1_limits_default(&def);
        lim = &def;
    }
    /* The head limit is enforced by never looking past it: an answer found inside is
     * within the limit, and needing a byte beyond it means the head is too long. The
     * return value is an int, so heads are capped below INT_MAX as well. */
    size_t max_head = lim->max_head < (size_t)INT32_MAX ? lim->max_head : (size_t)INT32_MAX;
    size_t n = len < max_head ? len : max_head;
    int r = parse((const unsigned char *)buf, n, lim, req, err);
    if (r == NX_H1_INCOMPLETE && len > max_head)
        return fail(err, 431, max_head, "request head too large");
    return r;
}

/* ---- chunked body (RFC 9112 §7.1) --------------------------------------------------- */

enum {
    CK_SIZE_START = 0, /* first hex digit of chunk-size */
    CK_SIZE,           /* more hex digits */
    CK_BWS_SEMI,       /* BWS after size or extension: only ";" may follow */
    CK_EXT_NAME_START, /* after ";", BWS then chunk-ext-name */
    CK_EXT_NAME,
    CK_BWS_NAME,      /* BWS after a name: "=" or ";" may follow */
    CK_EXT_VAL_START, /* after "=", BWS then token or quoted-string */
    CK_EXT_VAL_TOKEN,
    CK_EXT_QUOTED,
    CK_EXT_QUOTED_ESC,
    CK_EXT_AFTER_QUOTED,
    CK_SIZE_LF, /* CR seen at the end of the size line */
    CK_DATA,
    CK_DATA_CR,
    CK_DATA_LF,
    CK_TRAILER_START, /* start of a trailer line, or the final CRLF */
    CK_TRAILER_NAME,
    CK_TRAILER_VALUE,
    CK_TRAILER_LF,
    CK_END_LF,
    CK_DONE,
    CK_ERROR,
};

void nx_h1_chunked_init(nx_h1_chunked *c)
{
    memset(c, 0, sizeof *c);
}

/*
 * A byte-at-a-time state machine for the size lines and trailers (a few bytes per chunk) and
 * memmove for the data. Strictness as for the head, for the same reason: "5 \r\n" or "5\n"
 * or a missing CRLF after the data are read differently by different hops, and the bytes one
 * hop takes for data the next one takes for a request.
 */
int nx_h1_chunked_decode(nx_h1_chunked *c, const char *in, size_t in_len, size_t *consumed,
                         char *out, size_t *out_len, nx_h1_error *err)
{
    const unsigned char *s = (const unsigned char *)in;
    const char *why = NULL;
    size_t i = 0, o = 0;

    if (c->state == CK_ERROR) {
        *consumed = 0;
        *out_len = 0;
        return fail(err, 400, 0, "chunked body already failed");
    }
    while (i < in_len && c->state != CK_DONE) {
        unsigned char ch = s[i];

        if (c->state == CK_DATA) {
            size_t k = in_len - i;
            if ((uint64_t)k > c->remaining)
                k = (size_t)c->remaining;
            memmove(out + o, in + i, k);
            o += k;
            i += k;
            c->remaining -= k;
            if (c->remaining == 0)
                c->state = CK_DATA_CR;
            continue;
        }
        if (c->state < CK_SIZE_LF && ++c->line_len > CHUNK_LINE_MAX) {
            why = "chunk size line too long";
            break;
        }
        if (c->state >= CK_TRAILER_START && ++c->trailer_len > TRAILER_MAX) {
            why = "trailer section too long";
            break;
        }

        switch (c->state) {
        case CK_SIZE_START:
        case CK_SIZE:
            if (cls[ch] & C_HEX) {
                /* Refuse sizes from 2^63 up: they overflow a signed length elsewhere. */
                if (c->remaining >> 59)
                    why = "chunk size too large";
                c->remaining = c->remaining * 16 + (ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10);
                c->state = CK_SIZE;
            } else if (c->state == CK_SIZE_START) {
                why = "invalid chunk size";
            } else if (ch == '\r') {
                c->state = CK_SIZE_LF;
            } else if (ch == ';') {
                c->state = CK_EXT_NAME_START;
            } else if (is_ows(ch)) {
                c->state = CK_BWS_SEMI;
            } else {
                why = "invalid chunk size";
            }
            break;
        case CK_BWS_SEMI:
            /* BWS only before ";" (RFC 9112 §7.1.1): "5 \r\n" is refused, not trimmed. */
            if (ch == ';')
                c->state = CK_EXT_NAME_START;
            else if (!is_ows(ch))
                why = "invalid chunk extension";
            break;
        case CK_EXT_NAME_START:
            if (cls[ch] & C_TCHAR)
                c->state = CK_EXT_NAME;
            else if (!is_ows(ch))
                why = "invalid chunk extension";
            break;
        case CK_EXT_NAME:
            if (cls[ch] & C_TCHAR)
                break;
            if (ch == '\r')
                c->state = CK_SIZE_LF;
            else if (ch == ';')
                c->state = CK_EXT_NAME_START;
            else if (ch == '=')
                c->state = CK_EXT_VAL_START;
            else if (is_ows(ch))
                c->state = CK_BWS_NAME;
            else
                why = "invalid chunk extension";
            break;
        case CK_BWS_NAME:
            if (ch == '=')
                c->state = CK_EXT_VAL_START;
            else if (ch == ';')
                c->state = CK_EXT_NAME_START;
            else if (!is_ows(ch))
                why = "invalid chunk extension";
            break;
        case CK_EXT_VAL_START:
            if (ch == '"')
                c->state = CK_EXT_QUOTED;
            else if (cls[ch] & C_TCHAR)
                c->state = CK_EXT_VAL_TOKEN;
            else if (!is_ows(ch))
                why = "invalid chunk extension";
            break;
        case CK_EXT_VAL_TOKEN:
        case CK_EXT_AFTER_QUOTED:
            if (c->state == CK_EXT_VAL_TOKEN && (cls[ch] & C_TCHAR))
                break;
            if (ch == '\r')
                c->state = CK_SIZE_LF;
            else if (ch == ';')
                c->state = CK_EXT_NAME_START;
            else if (is_ows(ch))
                c->state = CK_BWS_SEMI;
            else
                why = "invalid chunk extension";
            break;
        case CK_EXT_QUOTED:
            if (ch == '"')
                c->state = CK_EXT_AFTER_QUOTED;
            else if (ch == '\\')
                c->state = CK_EXT_QUOTED_ESC;
            else if (!(cls[ch] & C_QDTEXT))
                why = "invalid chunk extension";
            break;
        case CK_EXT_QUOTED_ESC:
            if (cls[ch] & C_VALUE)
                c->state = CK_EXT_QUOTED;
            else
                why = "invalid chunk extension";
            break;
        case CK_SIZE_LF:
            if (ch != '\n')
                why = "bare CR in chunk size line";
            c->line_len = 0;
            c->state = c->remaining == 0 ? CK_TRAILER_START : CK_DATA;
            break;
        case CK_DATA_CR:
            if (ch != '\r')
                why = "chunk data not followed by CRLF";
            c->state = CK_DATA_LF;
            break;
        case CK_DATA_LF:
            if (ch != '\n')
                why = "chunk data not followed by CRLF";
            c->state = CK_SIZE_START;
            break;
        case CK_TRAILER_START:
            /* Trailers are checked like fields (no obs-fold, no bare CR/LF) and dropped:
             * nothing in them may change how this message was framed. */
            if (ch == '\r')
                c->state = CK_END_LF;
            else if (cls[ch] & C_TCHAR)
                c->state = CK_TRAILER_NAME;
            else
                why = "invalid trailer field";
            break;
        case CK_TRAILER_NAME:
            if (ch == ':')
                c->state = CK_TRAILER_VALUE;
            else if (!(cls[ch] & C_TCHAR))
                why = "invalid trailer field";
            break;
        case CK_TRAILER_VALUE:
            if (ch == '\r')
                c->state = CK_TRAILER_LF;
            else if (!(cls[ch] & C_VALUE))
                why = "invalid trailer field";
            break;
        case CK_TRAILER_LF:
            if (ch != '\n')
                why = "bare CR in trailer section";
            c->state = CK_TRAILER_START;
            break;
        case CK_END_LF:
            if (ch != '\n')
                why = "bare CR in trailer section";
            c->state = CK_DONE;
            break;
        default: why = "corrupt chunked decoder state"; break;
        }
        if (why != NULL)
            break;
        i++;
    }
    *consumed = i;
    *out_len = o;
    if (why != NULL) {
        c->state = CK_ERROR;
        return fail(err, 400, i, why);
    }
    return c->state == CK_DONE ? NX_OK : NX_H1_INCOMPLETE;
}
