/*
 * nexus/arena.h - per-request memory.
 *
 * Every request owns an arena that is released in one step when its response has been
 * written. Handlers allocate from it and never free. Non-memory resources (a pooled
 * connection, a file descriptor) register a cleanup hook so they cannot outlive the
 * request or leak on an error path.
 *
 * An arena is owned by one worker and one coroutine at a time; it is not thread-safe.
 */
#ifndef NEXUS_ARENA_H
#define NEXUS_ARENA_H

#include <stdarg.h>
#include <stddef.h>

typedef struct nx_arena nx_arena;

/* Called with its argument when the arena is reset or freed, newest hook first. */
typedef void (*nx_cleanup_fn)(void *arg);

/*
 * Returns size bytes aligned for any type, in the arena (valid until the arena is reset).
 * Never returns NULL: allocation failure aborts the worker, which the master replaces.
 */
void *nx_arena_alloc(nx_arena *a, size_t size);

/* As nx_arena_alloc, zero-filled. */
void *nx_arena_calloc(nx_arena *a, size_t n, size_t size);

/* A NUL-terminated copy of the len bytes at s, in the arena. */
char *nx_arena_strndup(nx_arena *a, const char *s, size_t len);

/* A NUL-terminated copy of s, in the arena. */
char *nx_arena_strdup(nx_arena *a, const char *s);

/* printf into the arena; the result is NUL-terminated and lives in the arena. */
char *nx_arena_printf(nx_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *nx_arena_vprintf(nx_arena *a, const char *fmt, va_list ap);

/* Runs fn(arg) when the arena is reset or freed. */
void nx_arena_on_cleanup(nx_arena *a, nx_cleanup_fn fn, void *arg);

#endif
