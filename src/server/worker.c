/*
 * worker.c - a worker process: one event loop, the listener, connections, and the drain.
 *
 * Several workers wait on the same listening socket; EPOLLEXCLUSIVE wakes one of them per
 * new connection instead of all. Signals arrive through a signalfd in the same loop, so a
 * signal handler never runs in the middle of a request.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/coro.h"
#include "core/log.h"
#include "core/util.h"
#include "cache/cache_impl.h"
#include "db/db_impl.h"
#include "http/http1.h"
#include "observe/accesslog.h"
#include "observe/health.h"
#include "plugin/loader.h"
#include "server/server.h"

#define ACCEPT_BATCH 64

typedef struct worker {
    const nx_config *cfg;
    nx_loop *loop;
    nx_http_ctx http;
    nx_io listen_io;
    nx_io signal_io;
    nx_timer graceful;
    int notify_fd;
    bool listening; /* listen_io is registered */
    bool draining;
    uint64_t served;
    uint64_t recycle_at; /* 0 = never */
    bool recycle_asked;
} worker;

static worker W;

static void notify(char msg)
{
    ssize_t r;
    do
        r = write(W.notify_fd, &msg, 1);
    while (r < 0 && errno == EINTR);
}

static _Noreturn void worker_exit(int status)
{
    nx_plugins_worker_stop();
    nx_cache_worker_stop();
    nx_db_stop();
    nx_accesslog_flush(NULL, NULL);
    _exit(status);
}

static void listen_pause(void)
{
    if (W.listening) {
        nx_loop_del(W.loop, &W.listen_io);
        W.listening = false;
    }
}

static void listen_resume(void)
{
    if (!W.listening && !W.draining) {
        if (nx_loop_add(W.loop, &W.listen_io, EPOLLIN | EPOLLEXCLUSIVE) == NX_OK)
            W.listening = true;
    }
}

static void on_accept(nx_loop *loop, nx_io *io, uint32_t events)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        if ((int64_t)W.http.nconns >= W.cfg->worker_connections) {
            /* Leave the rest in the backlog for workers with room; resume on a close. */
            nx_log_warn("worker_connections (%lld) reached; not accepting for now",
                        (long long)W.cfg->worker_connections);
            listen_pause();
            return;
        }
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        int fd = accept4(io->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE)
                nx_log_error("accept: %s (raise the open files limit)", strerror(errno));
            return; /* EAGAIN: another worker took it, or the backlog is empty */
        }
        nx_http_conn_open(&W.http, fd, (struct sockaddr *)&peer, len);
    }
}

static void maybe_exit(void)
{
    if (W.draining && W.http.nconns == 0 && W.http.inflight == 0) {
        nx_log_info("worker drained, exiting (served %llu requests)", (unsigned long long)W.served);
        worker_exit(0);
    }
}

static void on_conn_close(void *arg)
{
    if (W.draining) {
        maybe_exit();
        return;
    }
    if (!W.listening && (int64_t)W.http.nconns < W.cfg->worker_connections)
        listen_resume();
}

static void on_graceful_timeout(nx_loop *loop, nx_timer *t)
{
    size_t cut = nx_http_close_all(&W.http);
    nx_log_warn("graceful timeout: %zu request(s) still running were cut", cut);
    worker_exit(0);
}

static void drain(void)
{
    if (W.draining)
        return;
    W.draining = true;
    nx_health_set_draining(true);
    listen_pause();
    close(W.listen_io.fd);
    nx_http_drain(&W.http);
    W.graceful.cb = on_graceful_timeout;
    nx_timer_set(W.loop, &W.graceful, nx_loop_now(W.loop) + W.cfg->graceful_timeout_ms);
    maybe_exit();
}

static void on_done(void *arg, const nx_req *req, int status, uint64_t bytes)
{
    W.served++;
    nx_accesslog_write(req, status, bytes, nx_loop_wall(W.loop));
    if (W.recycle_at && W.served >= W.recycle_at && !W.recycle_asked) {
        /* The master starts a replacement and then tells this worker to drain. */
        W.recycle_asked = true;
        nx_log_info("max_requests reached after %llu requests; asking for a replacement",
                    (unsigned long long)W.served);
        notify(NX_MSG_RECYCLE);
    }
}

static void on_signal(nx_loop *loop, nx_io *io, uint32_t events)
{
    struct signalfd_siginfo si;
    while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGTERM:
        case SIGQUIT: drain(); break;
        case SIGUSR1: nx_accesslog_reopen(); break;
        default: break;
        }
    }
}

void nx_worker_main(const nx_config *cfg, int listen_fd, int notify_fd, nx_shared *shared, int slot)
{
    nx_log_set_role("worker");
    /* Die with the master instead of serving on unsupervised. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        _exit(1);

    memset(&W, 0, sizeof(W));
    W.cfg = cfg;
    W.notify_fd = notify_fd;
    nx_request_ids_init();
    nx_health_watch_stop_flag(&shared->stopping);

    /* SIGINT reaches the whole process group from a terminal; the master decides what it
     * means (a shutdown with its delay), and tells workers with SIGTERM. */
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    sigset_t unblock;
    sigfillset(&unblock);
    sigdelset(&unblock, SIGTERM);
    sigdelset(&unblock, SIGQUIT);
    sigdelset(&unblock, SIGUSR1);
    sigprocmask(SIG_UNBLOCK, &unblock, NULL);

    W.loop = nx_loop_new();
    if (!W.loop) {
        nx_log_error("epoll_create1: %s", strerror(errno));
        _exit(1);
    }
    nx_loop_watch_busy(W.loop, &shared->busy_since[slot]);
    W.signal_io.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    W.signal_io.cb = on_signal;
    nx_loop_add(W.loop, &W.signal_io, EPOLLIN);

    W.http.loop = W.loop;
    W.http.set = &cfg->http;
    W.http.router = nx_app_router;
    W.http.on_done = on_done;
    W.http.on_close = on_conn_close;
    nx_http_ctx_init(&W.http);
    if (nx_accesslog_enabled())
        nx_loop_on_tick(W.loop, nx_accesslog_flush, NULL);

    if (cfg->max_requests > 0) {
        uint64_t jitter = 0;
        if (cfg->max_requests_jitter > 0) {
            uint64_t r = 0;
            if (getrandom(&r, sizeof(r), 0) != sizeof(r))
                r = (uint64_t)getpid();
            jitter = r % ((uint64_t)cfg->max_requests_jitter + 1);
        }
        W.recycle_at = (uint64_t)cfg->max_requests + jitter;
    }

    nx_db_start(cfg->db, W.loop);
    if (nx_cache_worker_start(cfg->cache, W.loop) != NX_OK ||
        nx_pubsub_worker_start(W.loop) != NX_OK) {
        nx_log_error("cache: the %s backend cannot start in this worker",
                     cfg->cache->kind == NX_CACHE_REDIS ? "redis" : "memory");
        nx_accesslog_flush(NULL, NULL);
        _exit(1);
    }
    if (nx_plugins_worker_start() != NX_OK) {
        nx_accesslog_flush(NULL, NULL);
        _exit(1);
    }
    W.listen_io.fd = listen_fd;
    W.listen_io.cb = on_accept;
    listen_resume();
    if (!W.listening) {
        nx_log_error("cannot watch the listening socket: %s", strerror(errno));
        _exit(1);
    }
    notify(NX_MSG_READY);
    if (nx_loop_run(W.loop) != NX_OK)
        nx_log_error("event loop failed: %s", strerror(errno));
    worker_exit(1);
}
