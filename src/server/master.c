/*
 * master.c - start-up, supervision, shutdown and reload.
 *
 * The master sleeps in poll() on a signalfd and the workers' pipes, with a timeout for the
 * nearest of its own deadlines (end of the shutdown delay, a respawn after backoff, the
 * last moment of a reload or of the graceful stop). Everything it does happens in that
 * one loop, in order, so no signal can interrupt a half-updated worker table.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "cache/cache_impl.h"
#include "db/db_impl.h"
#include "db/migrate.h"
#include "http/exchange.h"
#include "observe/accesslog.h"
#include "observe/health.h"
#include "plugin/loader.h"
#include "server/server.h"

#define MAX_WORKERS NX_MAX_WORKERS
#define QUICK_DEATH_MS 2000
#define BACKOFF_MAX_MS 10000

enum wstate { W_STARTING, W_READY, W_DRAINING };

typedef struct wproc {
    pid_t pid;
    int fd;  /* read end of its notify pipe; -1 once closed */
    int efd; /* its pub/sub eventfd (cache/pubsub.c), -1 if none */
    int gen;
    enum wstate state;
    uint64_t started;
    pid_t replaces; /* a recycling worker this one takes over from, once ready */
    int slot;       /* its entry in M.shared->busy_since */
    bool killed;    /* stuck past worker_timeout and sent SIGKILL */
} wproc;

enum mstate { M_RUNNING, M_STOP_DELAY, M_STOPPING };

typedef struct master {
    nx_config *cfg;
    nx_shared *shared;
    int listen_fd;
    int sig_fd;
    enum mstate state;
    int gen;
    wproc w[MAX_WORKERS];
    size_t nw;
    bool reloading;
    uint64_t reload_deadline; /* 0: none (server.reload_timeout 0) */
    /*
     * While a reload is under way: the configuration, router and plugins the older
     * generation was started with. A worker of that generation started meanwhile (one
     * recycled, say) is forked from them, and an abandoned reload goes back to them.
     */
    bool prev_held;
    nx_config prev_cfg;
    nx_router *prev_router;
    nx_plugin_set prev_plugins;
    uint64_t stop_at; /* end of the shutdown delay */
    uint64_t kill_at; /* stragglers are killed after this */
    int respawns;     /* workers to start again after an unexpected exit */
    uint64_t respawn_at;
    uint64_t backoff_ms;
} master;

static master M;

/* Exchanges the current configuration, router and plugins with the ones held aside. */
static void swap_sets(void)
{
    nx_config cfg = *M.cfg;
    *M.cfg = M.prev_cfg;
    M.prev_cfg = cfg;
    nx_router *router = nx_app_router;
    nx_app_router = M.prev_router;
    M.prev_router = router;
    nx_plugin_set plugins = nx_plugins_take();
    nx_plugins_restore(M.prev_plugins);
    M.prev_plugins = plugins;
}

/* Frees the set held aside (the older generation's after a reload, or an abandoned one). */
static void drop_prev(void)
{
    if (!M.prev_held)
        return;
    nx_router_free(M.prev_router);
    nx_plugin_set_free(M.prev_plugins);
    nx_config_free(&M.prev_cfg);
    M.prev_held = false;
}

/* The lowest busy_since slot no worker holds (there are as many slots as workers). */
static int free_slot(void)
{
    for (int slot = 0;; slot++) {
        bool taken = false;
        for (size_t i = 0; i < M.nw && !taken; i++)
            taken = M.w[i].slot == slot;
        if (!taken)
            return slot;
    }
}

static int spawn(int gen, pid_t replaces)
{
    if (M.nw == MAX_WORKERS)
        return NX_ERR;
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        nx_log_error("pipe: %s", strerror(errno));
        return NX_ERR;
    }
    int efd = nx_pubsub_new_worker_fd(); /* -1 leaves the worker without messages */
    int slot = free_slot();
    M.shared->busy_since[slot] = 0;
    bool older = M.prev_held && gen != M.gen;
    if (older)
        swap_sets();
    pid_t pid = fork();
    if (older && pid != 0)
        swap_sets();
    if (pid < 0) {
        nx_log_error("fork: %s", strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        if (efd >= 0)
            close(efd);
        return NX_ERR;
    }
    if (pid == 0) {
        /* The global middleware, readiness and pub/sub lists hold both sets' entries
         * during a reload: this worker keeps only its own. */
        if (M.prev_held)
            nx_plugin_set_forget(M.prev_plugins);
        close(pfd[0]);
        close(M.sig_fd);
        for (size_t i = 0; i < M.nw; i++) {
            if (M.w[i].fd >= 0)
                close(M.w[i].fd);
            if (M.w[i].efd >= 0)
                close(M.w[i].efd);
        }
        nx_worker_main(M.cfg, M.listen_fd, pfd[1], M.shared, slot);
    }
    close(pfd[1]);
    fcntl(pfd[0], F_SETFL, O_NONBLOCK);
    M.w[M.nw++] = (wproc){.pid = pid,
                          .fd = pfd[0],
                          .efd = efd,
                          .gen = gen,
                          .state = W_STARTING,
                          .started = nx_now_ms(),
                          .replaces = replaces,
                          .slot = slot};
    nx_log_info("worker %d started (generation %d)", (int)pid, gen);
    return NX_OK;
}

static wproc *find(pid_t pid)
{
    for (size_t i = 0; i < M.nw; i++)
        if (M.w[i].pid == pid)
            return &M.w[i];
    return NULL;
}

static void drain_worker(wproc *w)
{
    if (w->state == W_DRAINING)
        return;
    w->state = W_DRAINING;
    kill(w->pid, SIGTERM);
}

static size_t count_gen(int gen, bool ready_only)
{
    size_t n = 0;
    for (size_t i = 0; i < M.nw; i++)
        if (M.w[i].gen == gen && M.w[i].state != W_DRAINING &&
            (!ready_only || M.w[i].state == W_READY))
            n++;
    return n;
}

static void begin_stop(const char *why)
{
    if (M.state != M_RUNNING)
        return;
    M.shared->stopping = 1;
    M.state = M_STOP_DELAY;
    M.stop_at = nx_now_ms() + M.cfg->shutdown_delay_ms;
    nx_log_info("%s: shutting down (/ready now 503; closing the listener in %llu ms)", why,
                (unsigned long long)M.cfg->shutdown_delay_ms);
}

static void stop_workers(void)
{
    M.state = M_STOPPING;
    M.reloading = false;
    M.respawns = 0;
    if (M.listen_fd >= 0) {
        close(M.listen_fd);
        M.listen_fd = -1;
    }
    for (size_t i = 0; i < M.nw; i++)
        drain_worker(&M.w[i]);
    M.kill_at = nx_now_ms() + M.cfg->graceful_timeout_ms + 5000;
    nx_log_info("stopping %zu worker(s); in-flight requests have %llu ms", M.nw,
                (unsigned long long)M.cfg->graceful_timeout_ms);
}

/* Keeps a setting that cannot change while running, saying so when it was changed. */
static void keep_str(char **next, char *const *cur, const char *key)
{
    if (strcmp(*next, *cur) != 0) {
        nx_log_warn("SIGHUP: %s changed to '%s', which needs a restart; keeping '%s'", key, *next,
                    *cur);
        free(*next);
        *next = nx_xstrdup(*cur);
    }
}

/*
 * Loads the configuration again from the same file, environment and flags, and the
 * plugins again from their files (private copies, so rebuilt ones are read anew), into a
 * new router. Both are swapped in only when both loaded: otherwise the error is logged
 * and everything stays as it was. Settings bound at start (the listening address, the
 * plugin folders) keep their values until a restart.
 */
static int reload_config_and_plugins(void)
{
    nx_config next;
    nx_config_defaults(&next);
    if (nx_config_load(&next, M.cfg->argc, M.cfg->argv, M.cfg->first) != NX_OK) {
        nx_config_free(&next);
        nx_log_error("SIGHUP: the configuration is invalid (see the message above); "
                     "still serving with the previous one");
        return NX_ERR;
    }
    keep_str(&next.host, &M.cfg->host, "app.host");
    if (next.port != M.cfg->port) {
        nx_log_warn("SIGHUP: app.port changed to %d, which needs a restart; keeping %d", next.port,
                    M.cfg->port);
        next.port = M.cfg->port;
    }
    /* The default resolved at start. */
    nx_config_default_plugins_dir(&next, M.cfg->plugins_dir);
    keep_str(&next.plugins_dir, &M.cfg->plugins_dir, "plugins.dir");
    bool configured = false;
    char why[512];
    if (nx_http_body_temp_check(&next.http, &configured, why, sizeof(why)) != NX_OK && configured) {
        nx_log_error("SIGHUP: server.client_body_temp_path: %s; still serving with the previous "
                     "configuration",
                     why);
        nx_config_free(&next);
        return NX_ERR;
    }

    nx_router *router = nx_router_new();
    nx_plugin_set old_plugins = nx_plugins_take();
    char err[768];
    if (nx_health_routes(router, err, sizeof(err)) != NX_OK ||
        nx_plugins_load(next.plugins_dir, &next, router, true, err, sizeof(err)) != NX_OK) {
        nx_log_error("SIGHUP: %s; still serving with the previous configuration and plugins", err);
        nx_router_free(router);
        nx_plugin_set_free(nx_plugins_take()); /* what loaded of the new set */
        nx_plugins_restore(old_plugins);
        nx_config_free(&next);
        return NX_ERR;
    }
    /* The memory cache's segment is made once, at start: a reload switching to it from
     * Redis maps it now; its size stays what it was. */
    if (nx_cache_prepare(next.cache) != NX_OK)
        nx_log_error("SIGHUP: cache: cannot map the memory cache: %s", strerror(errno));
    /* The old set stays aside until the new workers are ready (on_ready frees it) or
     * the reload is abandoned (run_timers brings it back). */
    M.prev_router = nx_app_router;
    M.prev_plugins = old_plugins;
    nx_app_router = router;

    if (strcmp(next.access_log, M.cfg->access_log) != 0 &&
        nx_accesslog_open(next.access_log) != NX_OK) {
        nx_log_error("SIGHUP: cannot open access log %s: %s; keeping %s", next.access_log,
                     strerror(errno), M.cfg->access_log);
        free(next.access_log);
        next.access_log = nx_xstrdup(M.cfg->access_log);
    }
    nx_log_apply_level(next.log_level);
    M.prev_cfg = *M.cfg;
    *M.cfg = next;
    M.prev_held = true;
    return NX_OK;
}

static void begin_reload(void)
{
    if (M.state != M_RUNNING)
        return;
    if (M.reloading) {
        nx_log_warn("SIGHUP: a reload is already in progress");
        return;
    }
    if (reload_config_and_plugins() != NX_OK)
        return;
    M.gen++;
    M.reloading = true;
    M.reload_deadline = M.cfg->reload_timeout_ms ? nx_now_ms() + M.cfg->reload_timeout_ms : 0;
    nx_log_info("SIGHUP: reloading, starting %d new worker(s) (generation %d)", M.cfg->workers,
                M.gen);
    for (int i = 0; i < M.cfg->workers; i++)
        spawn(M.gen, 0);
}

/* Called when a worker reported ready: a finished reload or recycling retires the old. */
static void on_ready(wproc *w)
{
    w->state = W_READY;
    if (w->replaces) {
        wproc *old = find(w->replaces);
        if (old)
            drain_worker(old);
        w->replaces = 0;
    }
    if (M.reloading && count_gen(M.gen, true) == (size_t)M.cfg->workers) {
        M.reloading = false;
        for (size_t i = 0; i < M.nw; i++)
            if (M.w[i].gen != M.gen)
                drain_worker(&M.w[i]);
        drop_prev();
        nx_log_info("reload complete: generation %d serving, older workers draining", M.gen);
    }
}

static void read_pipe(wproc *w)
{
    char msgs[16];
    ssize_t n = read(w->fd, msgs, sizeof(msgs));
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        close(w->fd);
        w->fd = -1;
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (msgs[i] == NX_MSG_READY && w->state == W_STARTING) {
            on_ready(w);
        } else if (msgs[i] == NX_MSG_RECYCLE && w->state == W_READY && M.state == M_RUNNING) {
            nx_log_info("worker %d reached max_requests; starting its replacement", (int)w->pid);
            if (spawn(w->gen, w->pid) != NX_OK)
                drain_worker(w);
        }
    }
}

static void describe_exit(int status, char *out, size_t len)
{
    if (WIFEXITED(status))
        snprintf(out, len, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, len, "killed by signal %d (%s)%s", WTERMSIG(status),
                 strsignal(WTERMSIG(status)), WCOREDUMP(status) ? ", core dumped" : "");
    else
        snprintf(out, len, "ended with status 0x%x", status);
}

static void reap(void)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        wproc *w = find(pid);
        if (!w)
            continue;
        char how[128];
        describe_exit(status, how, sizeof(how));
        bool expected = w->state == W_DRAINING && WIFEXITED(status) && WEXITSTATUS(status) == 0;
        uint64_t lived = nx_now_ms() - w->started;
        bool was_serving = w->state != W_DRAINING && w->gen == M.gen;
        bool was_replacement = w->replaces != 0;
        bool replace = M.state == M_RUNNING && !expected && (was_serving || was_replacement);
        if (expected)
            nx_log_info("worker %d %s after draining", (int)pid, how);
        else if (M.state == M_STOPPING)
            nx_log_warn("worker %d %s during shutdown", (int)pid, how);
        else if (w->state == W_DRAINING)
            nx_log_error("worker %d %s while draining; its in-flight requests were lost", (int)pid,
                         how);
        else
            nx_log_error("worker %d %s unexpectedly after %llu ms; it will be replaced", (int)pid,
                         how, (unsigned long long)lived);
        if (w->fd >= 0) {
            read_pipe(w); /* pick up a last message before closing */
            if (w->fd >= 0)
                close(w->fd);
        }
        if (w->efd >= 0)
            close(w->efd);
        *w = M.w[--M.nw];
        if (replace) {
            /* Crashes right after start (a plugin that segfaults at once, say) back off
             * exponentially instead of fork-looping. */
            if (lived < QUICK_DEATH_MS)
                M.backoff_ms = M.backoff_ms ? M.backoff_ms * 2 : 100;
            else
                M.backoff_ms = 0;
            if (M.backoff_ms > BACKOFF_MAX_MS)
                M.backoff_ms = BACKOFF_MAX_MS;
            if (!was_replacement)
                M.respawns++;
            M.respawn_at = nx_now_ms() + M.backoff_ms;
            if (M.backoff_ms)
                nx_log_warn("restarting a worker in %llu ms", (unsigned long long)M.backoff_ms);
        }
    }
}

static void on_signal(void)
{
    struct signalfd_siginfo si;
    while (read(M.sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGCHLD: reap(); break;
        case SIGTERM:
        case SIGINT:
        case SIGQUIT:
            if (M.state == M_RUNNING)
                begin_stop(strsignal((int)si.ssi_signo));
            else if (M.state == M_STOP_DELAY)
                stop_workers(); /* asked twice: skip the rest of the delay */
            break;
        case SIGHUP: begin_reload(); break;
        case SIGUSR1:
            nx_accesslog_reopen();
            for (size_t i = 0; i < M.nw; i++)
                kill(M.w[i].pid, SIGUSR1);
            break;
        default: break;
        }
    }
}

static int timeout_until(uint64_t when, int cur)
{
    uint64_t now = nx_now_ms();
    int t = when <= now ? 0 : (int)(when - now > 60000 ? 60000 : when - now);
    return cur < 0 || t < cur ? t : cur;
}

/*
 * The new workers did not all start in time: they are drained, and the configuration,
 * router and plugins of the running generation come back, so that a worker replaced later
 * runs what its peers run. Workers of that generation that died meanwhile (not replaced
 * while the reload was under way) are started again.
 */
static void abandon_reload(void)
{
    nx_log_error("reload failed: the new workers were not ready within %llu ms; keeping the "
                 "running ones and their configuration and plugins",
                 (unsigned long long)M.cfg->reload_timeout_ms);
    for (size_t i = 0; i < M.nw; i++)
        if (M.w[i].gen == M.gen)
            drain_worker(&M.w[i]);
    M.gen--;
    M.reloading = false;
    char *new_log = nx_xstrdup(M.cfg->access_log);
    swap_sets();
    drop_prev();
    nx_log_apply_level(M.cfg->log_level);
    if (strcmp(new_log, M.cfg->access_log) != 0 && nx_accesslog_open(M.cfg->access_log) != NX_OK)
        nx_log_error("cannot reopen access log %s: %s", M.cfg->access_log, strerror(errno));
    free(new_log);
    size_t running = count_gen(M.gen, false);
    M.respawns = running < (size_t)M.cfg->workers ? M.cfg->workers - (int)running : 0;
    M.respawn_at = nx_now_ms();
}

/*
 * A worker whose loop has been inside one batch of callbacks for server.worker_timeout
 * is stuck (a handler computing without end: a coroutine cannot be preempted) and every
 * connection it holds with it. It is killed; reap() then replaces it like any crash.
 */
static void kill_stuck_workers(uint64_t now)
{
    uint64_t limit = M.cfg->worker_timeout_ms;
    for (size_t i = 0; limit && i < M.nw; i++) {
        wproc *w = &M.w[i];
        uint64_t since = __atomic_load_n(&M.shared->busy_since[w->slot], __ATOMIC_RELAXED);
        if (w->killed || !since || now < since + limit)
            continue;
        nx_log_error("worker %d has been busy for %llu ms without returning to its event loop "
                     "(server.worker_timeout %llu ms): a handler is stuck; killing it",
                     (int)w->pid, (unsigned long long)(now - since), (unsigned long long)limit);
        kill(w->pid, SIGKILL);
        w->killed = true;
    }
}

static void run_timers(void)
{
    uint64_t now = nx_now_ms();
    kill_stuck_workers(now);
    if (M.state == M_STOP_DELAY && now >= M.stop_at)
        stop_workers();
    if (M.state == M_STOPPING && now >= M.kill_at) {
        for (size_t i = 0; i < M.nw; i++) {
            nx_log_error("worker %d did not stop in time; killing it", (int)M.w[i].pid);
            kill(M.w[i].pid, SIGKILL);
        }
        M.kill_at = now + 1000;
    }
    if (M.state == M_RUNNING && M.respawns && now >= M.respawn_at) {
        while (M.respawns > 0 && spawn(M.gen, 0) == NX_OK)
            M.respawns--;
    }
    if (M.reloading && M.reload_deadline && now >= M.reload_deadline)
        abandon_reload();
}

/* How often the master looks for stuck workers: a tenth of the limit, 100 ms to 1 s. */
static uint64_t watchdog_period(void)
{
    uint64_t p = M.cfg->worker_timeout_ms / 10;
    return p < 100 ? 100 : p > 1000 ? 1000 : p;
}

static int supervise(void)
{
    struct pollfd pfds[MAX_WORKERS + 2];
    wproc *owners[MAX_WORKERS + 2];
    int relay[MAX_WORKERS];
    while (!(M.state == M_STOPPING && M.nw == 0)) {
        size_t n = 0;
        pfds[n++] = (struct pollfd){.fd = M.sig_fd, .events = POLLIN};
        /* A worker published a message: every worker is told to read it. */
        pfds[n++] = (struct pollfd){.fd = nx_pubsub_master_fd(), .events = POLLIN};
        for (size_t i = 0; i < M.nw; i++) {
            if (M.w[i].fd >= 0) {
                owners[n] = &M.w[i];
                pfds[n++] = (struct pollfd){.fd = M.w[i].fd, .events = POLLIN};
            }
        }
        int timeout = -1;
        if (M.state == M_STOP_DELAY)
            timeout = timeout_until(M.stop_at, timeout);
        if (M.state == M_STOPPING)
            timeout = timeout_until(M.kill_at, timeout);
        if (M.state == M_RUNNING && M.respawns)
            timeout = timeout_until(M.respawn_at, timeout);
        if (M.reloading && M.reload_deadline)
            timeout = timeout_until(M.reload_deadline, timeout);
        if (M.cfg->worker_timeout_ms && M.nw)
            timeout = timeout_until(nx_now_ms() + watchdog_period(), timeout);
        int rc = poll(pfds, n, timeout);
        if (rc < 0 && errno != EINTR) {
            nx_log_error("poll: %s", strerror(errno));
            return 1;
        }
        if (rc > 0 && pfds[1].revents) {
            for (size_t i = 0; i < M.nw; i++)
                relay[i] = M.w[i].efd;
            nx_pubsub_relay(relay, M.nw);
        }
        /* Worker messages first: reaping may reorder the table they point into. */
        for (size_t i = 2; rc > 0 && i < n; i++)
            if (pfds[i].revents)
                read_pipe(owners[i]);
        if (rc > 0 && pfds[0].revents)
            on_signal();
        run_timers();
    }
    nx_log_info("all workers stopped; exiting");
    return 0;
}

int nx_server_run(nx_config *cfg)
{
    memset(&M, 0, sizeof(M));
    M.cfg = cfg;
    M.listen_fd = -1;

    if (nx_accesslog_open(cfg->access_log) != NX_OK) {
        nx_log_error("cannot open access log %s: %s", cfg->access_log, strerror(errno));
        return 1;
    }
    nx_app_router = nx_router_new();
    char err[512];
    if (nx_health_routes(nx_app_router, err, sizeof(err)) != NX_OK) {
        nx_log_error("built-in routes: %s", err);
        return 1;
    }
    int loaded = nx_plugins_load(cfg->plugins_dir, cfg, nx_app_router, false, err, sizeof(err));
    if (loaded != NX_OK) {
        nx_log_error("%s", err);
        return loaded == NX_PLUGINS_BAD_CONFIG ? NX_EX_CONFIG : 1;
    }
    nx_health_add_check(NULL, "database", nx_db_ready);
    nx_health_add_check(NULL, "cache", nx_cache_ready);
    if (nx_pubsub_prepare() != NX_OK) {
        nx_log_error("pub/sub: cannot map its message ring: %s", strerror(errno));
        return 1;
    }
    if (nx_cache_prepare(cfg->cache) != NX_OK) {
        nx_log_error("cache: cannot map %llu bytes of shared memory (cache.size): %s",
                     (unsigned long long)cfg->cache->size, strerror(errno));
        return 1;
    }
    if (cfg->db->auto_migrate && nx_migrate_at_start(cfg->db) != NX_MIGRATE_OK) {
        nx_log_error("database.auto_migrate: the migrations did not all apply; not starting");
        return 1;
    }
    M.shared =
        mmap(NULL, sizeof(nx_shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (M.shared == MAP_FAILED) {
        nx_log_error("mmap of the shared segment: %s", strerror(errno));
        return 1;
    }
    bool configured = false;
    if (nx_http_body_temp_check(&cfg->http, &configured, err, sizeof(err)) != NX_OK) {
        if (configured) {
            nx_log_error("server.client_body_temp_path: %s", err);
            return NX_EX_CONFIG;
        }
        nx_log_warn("request bodies over server.client_body_buffer_size will be refused (503): "
                    "%s; set server.client_body_temp_path to a writable folder",
                    err);
    }
    M.listen_fd = nx_listen_open(cfg->host, cfg->port);
    if (M.listen_fd < 0)
        return 1;

    sigset_t set;
    sigemptyset(&set);
    int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1};
    for (size_t i = 0; i < NX_ARRAY_LEN(sigs); i++)
        sigaddset(&set, sigs[i]);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    M.sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (M.sig_fd < 0) {
        nx_log_error("signalfd: %s", strerror(errno));
        return 1;
    }
    if (cfg->pid_file && *cfg->pid_file) {
        FILE *f = fopen(cfg->pid_file, "w");
        if (!f) {
            nx_log_error("cannot write pid file %s: %s", cfg->pid_file, strerror(errno));
            return 1;
        }
        fprintf(f, "%d\n", (int)getpid());
        fclose(f);
    }
    nx_log_info("nexus %s listening on http://%s:%d with %d worker(s), %zu plugin(s)", NX_VERSION,
                cfg->host, cfg->port, cfg->workers, nx_plugins_count());
    for (int i = 0; i < cfg->workers; i++)
        if (spawn(M.gen, 0) != NX_OK)
            return 1;
    int rc = supervise();
    if (cfg->pid_file && *cfg->pid_file)
        unlink(cfg->pid_file);
    drop_prev(); /* stopped during a reload */
    nx_plugins_unload();
    return rc;
}
