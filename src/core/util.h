/*
 * core/util.h - the few macros and helpers every layer uses.
 */
#ifndef NX_CORE_UTIL_H
#define NX_CORE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <nexus/log.h>

#define NX_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define nx_container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#define NX_LIKELY(x) __builtin_expect(!!(x), 1)
#define NX_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Invariants: stays on in release builds; a broken one kills this worker, not the server. */
#define NX_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (NX_UNLIKELY(!(cond)))                                                                  \
            nx_assert_fail(#cond, __FILE__, __LINE__);                                             \
    } while (0)

_Noreturn void nx_assert_fail(const char *cond, const char *file, int line);

/* Allocation failure in a worker aborts it; the master replaces it. */
_Noreturn void nx_oom(void);
void *nx_xmalloc(size_t size);
void *nx_xcalloc(size_t n, size_t size);
void *nx_xrealloc(void *p, size_t size);
char *nx_xstrdup(const char *s);

/* Monotonic milliseconds (coarse clock: cheap, about 1-4 ms resolution). */
uint64_t nx_now_ms(void);

/* Runs fn(arg) on a detached thread with a stack of stack_size bytes, for one blocking call
 * kept off the event loop (a cancel request, a name lookup). 0, or -1 with errno set. */
int nx_thread_detached(void *(*fn)(void *), void *arg, size_t stack_size);

/* Creates the folder dir and its missing parents with mode; existing ones are kept.
 * 0, or -1 with errno set (the path too long: ENAMETOOLONG). */
int nx_mkdirs(const char *dir, unsigned mode);

/* The same for the folder that holds file ("data/app.db": data); 0 when it has none. */
int nx_mkdirs_for(const char *file, unsigned mode);

/*
 * Parses a duration: "250ms", "30s", "5m", "1h", or a bare number of seconds ("1.5").
 * Returns 0 and sets *ms, or -1 when malformed.
 */
int nx_parse_duration_ms(const char *s, uint64_t *ms);

/* Parses a size: "100M", "8k", "1g", bare bytes ("4096"); case-insensitive. 0 or -1. */
int nx_parse_size(const char *s, uint64_t *bytes);

/* Parses a non-negative decimal integer of 1 to 19 digits that fits in int64; 0 or -1. */
int nx_parse_i64(const char *s, size_t len, int64_t *out);

#endif
