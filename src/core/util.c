/*
 * util.c - allocation wrappers, clocks and the parsers for operator-written values.
 */
#include "core/util.h"

#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void nx_assert_fail(const char *cond, const char *file, int line)
{
    nx_log_at(NX_LOG_ERROR, file, line, "assertion failed: %s", cond);
    abort();
}

void nx_oom(void)
{
    static const char msg[] = "nexus: out of memory, aborting this process\n";
    ssize_t r = write(2, msg, sizeof(msg) - 1);
    (void)r;
    abort();
}

void *nx_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p)
        nx_oom();
    return p;
}

void *nx_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        nx_oom();
    return p;
}

void *nx_xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (!q)
        nx_oom();
    return q;
}

char *nx_xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        nx_oom();
    return p;
}

uint64_t nx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int nx_parse_duration_ms(const char *s, uint64_t *ms)
{
    if (!s || !*s)
        return -1;
    /* Digits with at most one '.', then the unit: strtod alone would take "0x10" or
     * "1e3", which no operator means as a duration. */
    size_t i = 0, dots = 0;
    while (isdigit((unsigned char)s[i]) || (s[i] == '.' && ++dots == 1))
        i++;
    if (i == 0 || s[i] == '.')
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end != s + i)
        return -1;
    if (errno || end == s || v < 0 || !isfinite(v) || !isdigit((unsigned char)s[0]))
        return -1;
    double mult;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "m") == 0)
        mult = 60000;
    else if (strcmp(end, "h") == 0)
        mult = 3600000;
    else
        return -1;
    double r = v * mult;
    if (r > 1e15)
        return -1;
    *ms = (uint64_t)(r + 0.5);
    return 0;
}

int nx_parse_size(const char *s, uint64_t *bytes)
{
    if (!s || !isdigit((unsigned char)s[0]))
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    uint64_t mult = 1;
    switch (tolower((unsigned char)*end)) {
    case '\0': break;
    case 'k':
        mult = 1024ull;
        end++;
        break;
    case 'm':
        mult = 1024ull * 1024;
        end++;
        break;
    case 'g':
        mult = 1024ull * 1024 * 1024;
        end++;
        break;
    default: return -1;
    }
    if (*end == 'b' || *end == 'B')
        end++;
    if (*end != '\0' || (v && mult > UINT64_MAX / v))
        return -1;
    *bytes = v * mult;
    return 0;
}

int nx_parse_i64(const char *s, size_t len, int64_t *out)
{
    if (len == 0 || len > 19)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > INT64_MAX)
        return -1;
    *out = (int64_t)v;
    return 0;
}

int nx_mkdirs(const char *dir, unsigned mode)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = path + 1;; p++) {
        bool last = *p == '\0';
        if (*p != '/' && !last)
            continue;
        *p = '\0';
        if (mkdir(path, (mode_t)mode) != 0 && errno != EEXIST)
            return -1;
        if (last)
            return 0;
        *p = '/';
    }
}

int nx_mkdirs_for(const char *file, unsigned mode)
{
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof(dir), "%s", file) >= (int)sizeof(dir)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    return nx_mkdirs(dir, mode);
}

int nx_thread_detached(void *(*fn)(void *), void *arg, size_t stack_size)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, stack_size);
    pthread_t t;
    int rc = pthread_create(&t, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}
