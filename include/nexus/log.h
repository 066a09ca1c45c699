/*
 * nexus/log.h - the server's log.
 *
 * One line per event on the error log (stderr by default), logfmt style:
 *   ts=2026-12-04T20:41:14.123Z level=info pid=4242 src=master.c:88 msg="worker started"
 * Callable from any process; lines are written with one write(2) so that lines from
 * several workers never interleave.
 */
#ifndef NEXUS_LOG_H
#define NEXUS_LOG_H

typedef enum nx_log_level {
    NX_LOG_DEBUG,
    NX_LOG_INFO,
    NX_LOG_WARN,
    NX_LOG_ERROR,
} nx_log_level;

void nx_log_at(nx_log_level level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define nx_log_debug(...) nx_log_at(NX_LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__)
#define nx_log_info(...) nx_log_at(NX_LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define nx_log_warn(...) nx_log_at(NX_LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define nx_log_error(...) nx_log_at(NX_LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)

#endif
