/*
 * observe/accesslog.h - the access log, in nginx's "combined" format.
 *
 *   127.0.0.1 - - [04/Dec/2026:20:41:14 +0000] "GET /json HTTP/1.1" 200 27 "-" "curl/7.88.1"
 *
 * Each worker buffers its lines and writes them once per loop iteration (or when the
 * buffer fills), cutting at line ends, so a busy worker makes one write per batch and
 * lines from different workers never mix.
 */
#ifndef NX_OBSERVE_ACCESSLOG_H
#define NX_OBSERVE_ACCESSLOG_H

#include <stdint.h>

#include "core/loop.h"
#include "http/exchange.h"

/* Opens the log: "off", "stdout" or a path (appended). NX_OK, or NX_ERR with errno. */
int nx_accesslog_open(const char *where);

/* True when logging is on. */
bool nx_accesslog_enabled(void);

/* Appends one line for a finished request. */
void nx_accesslog_write(const nx_req *req, int status, uint64_t body_bytes, int64_t wall);

/* Writes buffered lines (a loop tick hook; arg unused). */
void nx_accesslog_flush(nx_loop *loop, void *arg);

/* Reopens the file (SIGUSR1, after log rotation). */
int nx_accesslog_reopen(void);

#endif
