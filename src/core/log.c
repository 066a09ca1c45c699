/*
 * log.c - the error log: one logfmt line per event, one write(2) per line.
 *
 * Workers share the log's file descriptor; a single write of a line shorter than
 * PIPE_BUF is atomic on pipes and O_APPEND files, so lines never interleave.
 */
#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_fd = 2;
static nx_log_level log_min = NX_LOG_INFO;
static const char *log_role = "master";

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void nx_log_set_level(nx_log_level level)
{
    log_min = level;
}

void nx_log_apply_level(const char *name)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
        if (strcmp(name, level_names[i]) == 0)
            log_min = (nx_log_level)i;
}

void nx_log_set_role(const char *role)
{
    log_role = role;
}

void nx_log_at(nx_log_level level, const char *file, int line, const char *fmt, ...)
{
    if (level < log_min)
        return;
    int saved_errno = errno;
    char buf[2048];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    int n =
        snprintf(buf, sizeof(buf),
                 "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ level=%s pid=%d role=%s src=%s:%d msg=\"",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(tv.tv_usec / 1000), level_names[level], (int)getpid(), log_role, base, line);
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* Quote the message so a value with spaces or quotes stays one logfmt field. */
    for (const char *p = msg; *p && n < (int)sizeof(buf) - 3; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)c;
        } else if (c == '\n') {
            buf[n++] = '\\';
            buf[n++] = 'n';
        } else if (c >= 0x20) {
            buf[n++] = (char)c;
        }
    }
    buf[n++] = '"';
    buf[n++] = '\n';
    ssize_t w = write(log_fd, buf, (size_t)n);
    (void)w;
    errno = saved_errno;
}
