/*
 * buf.c - pooled byte buffers.
 */
#include "core/buf.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"

#define POOL_MAX 256

static nx_buf *pool[POOL_MAX];
static size_t pool_len;

nx_buf *nx_buf_get(size_t cap)
{
    if (cap <= NX_BUF_SIZE && pool_len) {
        nx_buf *b = pool[--pool_len];
        b->start = b->end = 0;
        return b;
    }
    if (cap < NX_BUF_SIZE)
        cap = NX_BUF_SIZE;
    nx_buf *b = nx_xmalloc(sizeof(*b));
    b->data = nx_xmalloc(cap);
    b->cap = cap;
    b->start = b->end = 0;
    return b;
}

void nx_buf_put(nx_buf *b)
{
    if (!b)
        return;
    if (b->cap == NX_BUF_SIZE && pool_len < POOL_MAX) {
        pool[pool_len++] = b;
        return;
    }
    free(b->data);
    free(b);
}

void nx_buf_reserve(nx_buf *b, size_t n)
{
    if (b->cap - b->end >= n)
        return;
    size_t used = b->end - b->start;
    if (b->start && b->cap - used >= n) {
        memmove(b->data, b->data + b->start, used);
        b->start = 0;
        b->end = used;
        return;
    }
    size_t cap = b->cap;
    while (cap - used < n)
        cap *= 2;
    char *d = nx_xmalloc(cap);
    memcpy(d, b->data + b->start, used);
    free(b->data);
    b->data = d;
    b->cap = cap;
    b->start = 0;
    b->end = used;
}

void nx_buf_append(nx_buf *b, const void *p, size_t len)
{
    nx_buf_reserve(b, len);
    memcpy(b->data + b->end, p, len);
    b->end += len;
}

void nx_buf_pool_drain(void)
{
    while (pool_len) {
        nx_buf *b = pool[--pool_len];
        free(b->data);
        free(b);
    }
}
