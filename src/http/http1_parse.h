/*
 * http1_parse.h - the HTTP/1.1 request-head parser and chunked body decoder (RFC 9112).
 *
 * Private to src/http. Both are pure functions over caller-owned bytes: they allocate
 * nothing, copy nothing (every nx_str points into the caller's buffer) and keep no state
 * between calls except the chunked decoder's explicit struct. The connection code calls
 * nx_h1_parse_head() again from the start of the head each time more bytes arrive, so
 * the parser must be fast on the common case rather than resumable.
 *
 * Strict by design: this is a server facing the Internet, so every ambiguity that could
 * let a proxy and Nexus disagree about where a request ends (request smuggling) is an
 * error, not a guess.
 */
#ifndef NX_HTTP1_PARSE_H
#define NX_HTTP1_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nexus/http.h>

#define NX_H1_MAX_HEADERS 100

/* Return values besides a positive head length / NX_OK. */
#define NX_H1_INCOMPLETE (-2) /* need more bytes; nothing is wrong yet */
#define NX_H1_ERROR (-1)      /* reject: see nx_h1_error */

typedef struct nx_h1_limits {
    size_t max_request_line; /* longer request line -> 414 (default 8192) */
    size_t max_field;        /* longer header field line -> 431 (default 8192) */
    size_t max_head;         /* longer head in total -> 431 (default 32768) */
    size_t max_headers;      /* more fields -> 431 (default and cap NX_H1_MAX_HEADERS) */
} nx_h1_limits;

typedef struct nx_h1_header {
    nx_str name;  /* as sent (case preserved), never empty */
    nx_str value; /* leading and trailing SP/HTAB removed; may be empty */
} nx_h1_header;

typedef struct nx_h1_request {
    nx_str method; /* token, as sent */
    nx_str target; /* request-target, as sent */
    nx_str path;   /* target up to '?' (or the whole authority/asterisk form); for an
                      absolute-form target, its path after the authority, which may be
                      empty ("http://h" or "http://h?q": the path is "/") */
    nx_str query;  /* after '?', without it; len 0 when absent */
    int version;   /* 10 or 11 */
    nx_h1_header headers[NX_H1_MAX_HEADERS];
    size_t nheaders;

    /* Framing and connection semantics, derived from the headers: */
    int64_t content_length; /* -1 when no Content-Length */
    bool chunked;           /* Transfer-Encoding ends in chunked */
    bool keep_alive;        /* HTTP/1.1 unless "Connection: close"; 1.0 only with keep-alive */
    bool expect_continue;   /* Expect: 100-continue */
    bool upgrade;           /* Connection: upgrade with an Upgrade header */
    nx_str host;            /* Host value; len 0 only for HTTP/1.0 without Host; for an
                               absolute-form target its authority (RFC 9112 §3.2.2) */
} nx_h1_request;
/* Every nx_str above points into the parsed buffer, empty ones included (never NULL). */

typedef struct nx_h1_error {
    int status;         /* HTTP status to answer: 400, 414, 431, 501 or 505 */
    size_t offset;      /* byte offset in the input where the problem was found */
    const char *reason; /* static, human-readable: "invalid character in header name" */
} nx_h1_error;

/*
 * Parses one request head from buf[0..len).
 *
 * Returns the head's length in bytes (through the CRLF CRLF that ends it; leading empty
 * lines before the request line are skipped and counted) and fills *req; NX_H1_INCOMPLETE
 * when the head is not complete yet and no limit is exceeded so far; or NX_H1_ERROR with
 * *err filled.
 *
 * Rejected (status): a malformed request line or method token (400); a method that is
 * well formed but not a registered HTTP method (501, reported only after the rest of the
 * head parsed, so that req->path is set for the answer); a version other than HTTP/1.0 or
 * HTTP/1.1 (505, or 400 when malformed); a target with control characters, spaces or
 * bytes >= 0x80 (400); a request line over max_request_line (414); a field over
 * max_field, a head over max_head or more than max_headers fields (431); an empty or
 * invalid field name, whitespace before the colon, obs-fold, bare CR or LF, NUL or other
 * control characters in values (400); HTTP/1.1 without exactly one Host (400), or more
 * than one Host in any version; Content-Length that is not 1*DIGIT, overflows, or appears
 * twice with different values (equal duplicates, also as a list "5, 5", are accepted as
 * one); Transfer-Encoding together with Content-Length; Transfer-Encoding in HTTP/1.0;
 * Transfer-Encoding whose final coding is not chunked, or chunked appearing twice (400);
 * a coding other than chunked (501).
 *
 * Also rejected with 400, as a server may (RFC 9112 §3, §3.2, RFC 9110 §4.2.4, §9.3.6): a
 * target form that does not fit the method (asterisk-form outside OPTIONS, authority-form
 * outside CONNECT, CONNECT without it); '#' in the target; an absolute-form target whose
 * scheme is not http(s), or with userinfo or an invalid authority; an empty Transfer-Encoding
 * list element, a parameter on chunked, or a tab anywhere in Transfer-Encoding (hops disagree
 * on whether "chunked\t" is chunked); Content-Length or Transfer-Encoding on CONNECT.
 * "HTTP/x.y" other than 1.0 and 1.1 gets 505 as soon as its digits arrive.
 *
 * lim may be NULL for the defaults and err may be NULL. *req is meaningful only after a
 * positive return; it holds up to NX_H1_MAX_HEADERS fields, so keep it off small stacks.
 */
int nx_h1_parse_head(const char *buf, size_t len, const nx_h1_limits *lim, nx_h1_request *req,
                     nx_h1_error *err);

/* Fills *lim with the defaults above (the guide's nginx buffer sizes). */
void nx_h1_limits_default(nx_h1_limits *lim);

/* Decoder state for a chunked body; zero it (or call nx_h1_chunked_init) per body. */
typedef struct nx_h1_chunked {
    int state;
    uint64_t remaining; /* bytes left in the current chunk's data */
    size_t line_len;    /* bytes seen in the current size line, extension or trailer */
    size_t trailer_len; /* total trailer bytes, bounded */
} nx_h1_chunked;

void nx_h1_chunked_init(nx_h1_chunked *c);

/*
 * Decodes the chunked bytes in[0..in_len), writing payload bytes to out (which may be the
 * same memory as in: output never overtakes input). On return *consumed is how many input
 * bytes were used and *out_len how many payload bytes were written.
 *
 * Returns NX_OK when the last chunk and the trailer section are complete (bytes after
 * *consumed belong to the next request), NX_H1_INCOMPLETE when all input was used and more
 * is needed, or NX_H1_ERROR (status 400, reason set; offset relative to in) for a bad chunk
 * size (non-hex, empty, overflowing 2^63), a bad chunk extension, data not followed by
 * CRLF, bare LF or CR, or a trailer section over 8192 bytes or with a malformed field.
 *
 * Also an error: a chunk-size line (size and extensions) over 4096 bytes, and whitespace
 * after the size that is not followed by ';' ("5 \r\n"). Trailer fields are checked and
 * dropped. Once NX_OK was returned further calls return NX_OK and consume nothing; after
 * NX_H1_ERROR they return NX_H1_ERROR. *consumed and *out_len are set on every return.
 */
int nx_h1_chunked_decode(nx_h1_chunked *c, const char *in, size_t in_len, size_t *consumed,
                         char *out, size_t *out_len, nx_h1_error *err);

#endif
