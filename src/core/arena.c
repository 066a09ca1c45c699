/*
 * arena.c - bump allocation in blocks, released all at once.
 *
 * The first block is allocated together with the arena header, so resetting an arena
 * returns it to the state of a fresh one without touching malloc. A large allocation
 * (over a quarter of a block) that does not fit in the current block gets a block of its
 * own, so one big body does not waste the rest of a normal block.
 */
#include "core/arena.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

#define ALIGN 16

typedef struct block {
    struct block *next;
    size_t size; /* usable bytes in data */
    size_t used;
    _Alignas(ALIGN) char data[];
} block;

typedef struct cleanup {
    struct cleanup *next;
    nx_cleanup_fn fn;
    void *arg;
} cleanup;

struct nx_arena {
    block *head;       /* block being filled; the chain ends with first */
    cleanup *cleanups; /* newest first */
    size_t block_size;
    size_t total; /* bytes handed out since reset */
    block first;  /* must stay last: its data[] runs to the end of the allocation */
};

nx_arena *nx_arena_new(size_t block_size)
{
    if (block_size == 0)
        block_size = NX_ARENA_BLOCK;
    nx_arena *a = nx_xmalloc(sizeof(*a) + block_size);
    a->first.next = NULL;
    a->first.size = block_size;
    a->first.used = 0;
    a->head = &a->first;
    a->cleanups = NULL;
    a->block_size = block_size;
    a->total = 0;
    return a;
}

static void run_cleanups(nx_arena *a)
{
    /* A hook may allocate from the arena or add hooks; take the list first. */
    while (a->cleanups) {
        cleanup *c = a->cleanups;
        a->cleanups = c->next;
        c->fn(c->arg);
    }
}

void nx_arena_reset(nx_arena *a)
{
    run_cleanups(a);
    block *b = a->head;
    while (b != &a->first) {
        block *next = b->next;
        free(b);
        b = next;
    }
    a->head = &a->first;
    a->first.used = 0;
    a->total = 0;
}

void nx_arena_free(nx_arena *a)
{
    if (!a)
        return;
    nx_arena_reset(a);
    free(a);
}

size_t nx_arena_used(const nx_arena *a)
{
    return a->total;
}

void *nx_arena_alloc(nx_arena *a, size_t size)
{
    size_t need = (size + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (need < size)
        nx_oom();
    block *b = a->head;
    if (b->size - b->used >= need) {
        void *p = b->data + b->used;
        b->used += need;
        a->total += need;
        return p;
    }
    /* A big request gets its own block, linked behind the current one so the current
     * block keeps filling; a normal one starts a new current block. */
    size_t bsize = need > a->block_size / 4 ? need : a->block_size;
    if (bsize > SIZE_MAX - sizeof(block))
        nx_oom();
    block *nb = nx_xmalloc(sizeof(block) + bsize);
    nb->size = bsize;
    nb->used = need;
    if (bsize == need && b != &a->first) {
        nb->next = b->next;
        b->next = nb;
    } else {
        /* Never link behind first: it must stay the chain's tail. A full-sized big
         * block as head simply makes the next small allocation start a new block. */
        nb->next = b;
        a->head = nb;
    }
    a->total += need;
    return nb->data;
}

void *nx_arena_calloc(nx_arena *a, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        nx_oom();
    void *p = nx_arena_alloc(a, n * size);
    memset(p, 0, n * size);
    return p;
}

char *nx_arena_strndup(nx_arena *a, const char *s, size_t len)
{
    char *p = nx_arena_alloc(a, len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *nx_arena_strdup(nx_arena *a, const char *s)
{
    return nx_arena_strndup(a, s, strlen(s));
}

char *nx_arena_vprintf(nx_arena *a, const char *fmt, va_list ap)
{
    char small[256];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof(small), fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return nx_arena_strdup(a, "");
    char *p = nx_arena_alloc(a, (size_t)n + 1);
    if ((size_t)n < sizeof(small))
        memcpy(p, small, (size_t)n + 1);
    else
        vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

char *nx_arena_printf(nx_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = nx_arena_vprintf(a, fmt, ap);
    va_end(ap);
    return p;
}

void nx_arena_on_cleanup(nx_arena *a, nx_cleanup_fn fn, void *arg)
{
    cleanup *c = nx_arena_alloc(a, sizeof(*c));
    c->fn = fn;
    c->arg = arg;
    c->next = a->cleanups;
    a->cleanups = c;
}
