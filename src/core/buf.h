/*
 * core/buf.h - byte buffers for connection input and output.
 *
 * Connections hold no buffer while idle: one is taken from the worker's pool when bytes
 * arrive or a response is written, and returned when it is empty again. That is what
 * keeps an idle keep-alive connection down to its small struct.
 */
#ifndef NX_CORE_BUF_H
#define NX_CORE_BUF_H

#include <stddef.h>

/* Size of pooled buffers; larger ones are allocated exactly and freed on release. */
#define NX_BUF_SIZE 16384

typedef struct nx_buf {
    char *data;
    size_t start; /* first unconsumed byte */
    size_t end;   /* one past the last filled byte */
    size_t cap;
} nx_buf;

/* An empty buffer of at least cap bytes (pooled when cap <= NX_BUF_SIZE). */
nx_buf *nx_buf_get(size_t cap);

/* Returns b to the pool or frees it. NULL is a no-op. */
void nx_buf_put(nx_buf *b);

/* Makes room for n more bytes after end, moving unconsumed bytes to the front first
 * when that suffices, else reallocating. */
void nx_buf_reserve(nx_buf *b, size_t n);

/* Appends len bytes. */
void nx_buf_append(nx_buf *b, const void *p, size_t len);

static inline size_t nx_buf_len(const nx_buf *b)
{
    return b->end - b->start;
}

/* Frees the pooled buffers (worker exit, tests). */
void nx_buf_pool_drain(void);

#endif
