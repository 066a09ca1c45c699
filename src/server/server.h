/*
 * server/server.h - the master process and its workers.
 *
 * The master binds the listener, loads plugins, maps the shared segment, forks the
 * workers and supervises them; it never serves a request. Workers tell the master about
 * themselves through a pipe each: 'R' once ready to serve, 'M' when max_requests is
 * reached and a replacement should be started.
 */
#ifndef NX_SERVER_SERVER_H
#define NX_SERVER_SERVER_H

#include <sys/types.h>

#include "config/config.h"

/* Memory shared by the master and every worker (MAP_SHARED, made before forking). */
#define NX_MAX_WORKERS 1024

typedef struct nx_shared {
    volatile int stopping; /* the master is shutting down: /ready answers 503 */
    /* Per worker slot: 0 while its loop waits for events, else since when it has been
     * busy (nx_loop_watch_busy). The master kills a worker busy past worker_timeout. */
    uint64_t busy_since[NX_MAX_WORKERS];
} nx_shared;

#define NX_MSG_READY 'R'
#define NX_MSG_RECYCLE 'M'

/* Runs the server until it stops; returns the process exit status. */
int nx_server_run(nx_config *cfg);

/* A bound, listening, non-blocking socket for host:port, or -1 with the reason logged. */
int nx_listen_open(const char *host, int port);

/* The worker's life: never returns. slot: its entry in shared->busy_since. */
_Noreturn void nx_worker_main(const nx_config *cfg, int listen_fd, int notify_fd, nx_shared *shared,
                              int slot);

#endif
