/*
 * core/arena.h - creating, resetting and freeing arenas (the allocation API is public,
 * in <nexus/arena.h>).
 *
 * The server owns arenas: one per request, taken from a per-worker free list and reset
 * when the response is complete. Reset keeps the first block, so a request that fits in
 * it costs no malloc at all.
 */
#ifndef NX_CORE_ARENA_H
#define NX_CORE_ARENA_H

#include <stddef.h>

#include <nexus/arena.h>

/* Default size of an arena's first block; requests that fit in it never call malloc. */
#define NX_ARENA_BLOCK 4096

/* A new arena whose blocks are block_size bytes (0 = NX_ARENA_BLOCK); the caller frees. */
nx_arena *nx_arena_new(size_t block_size);

/* Runs the cleanup hooks, frees every block but the first, and empties it. */
void nx_arena_reset(nx_arena *a);

/* Runs the cleanup hooks and frees everything. NULL is a no-op. */
void nx_arena_free(nx_arena *a);

/* Bytes handed out since the last reset (for tests and metrics). */
size_t nx_arena_used(const nx_arena *a);

#endif
