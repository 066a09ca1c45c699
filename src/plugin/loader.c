/*
 * loader.c - finding plugins, ordering them, and running their init; the registration API
 * plugins call from init.
 *
 * Three passes. Discover: every *.so of the plugin folders is opened and its descriptor
 * checked (ABI version first) before any of its code runs: a plugin built against another
 * ABI could otherwise crash the server inside its init. Order: plugins.enabled filters,
 * then dependencies decide, ties broken by name so the order never depends on the
 * filesystem. Init: settings are resolved and checked, then init runs.
 *
 * A failure stops start-up, naming the plugin, its file and the reason; with
 * plugins.strict false it is logged and the plugin (and whatever depends on it) is left
 * out, its routes and checks removed.
 *
 * At start plugins are opened from their files. On reload each is first copied into an
 * anonymous memory file: the dynamic linker recognizes an object it already holds by
 * device and inode, and a plugin rebuilt in place keeps its inode, so opening the file
 * itself would hand back the old code.
 */
#include "plugin/loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/cache_impl.h"
#include "core/util.h"
#include "http/middleware.h"
#include "observe/health.h"
#include "plugin/plugin_impl.h"

static nx_plugin **plugins; /* every plugin found, in init order once ordered */
static size_t nplugins;

size_t nx_plugins_count(void)
{
    size_t n = 0;
    for (size_t i = 0; i < nplugins; i++)
        n += plugins[i]->state == NX_PLUGIN_LOADED;
    return n;
}

const char *nx_plugin_name(const nx_plugin *p)
{
    return p->desc->name;
}

int nx_route(nx_plugin *p, const char *method, const char *pattern, nx_handler_fn handler,
             int flags)
{
    char err[256];
    if (nx_router_add(p->router, method, pattern, handler, flags, p->desc->name, err,
                      sizeof(err)) != NX_OK) {
        nx_log_error("plugin %s (%s): route %s %s: %s", p->desc->name, p->path,
                     method ? method : "(null)", pattern ? pattern : "(null)", err);
        p->failed = 1;
        return NX_ERR;
    }
    return NX_OK;
}

int nx_ready_check(nx_plugin *p, const char *name, nx_ready_fn check)
{
    if (!name || !*name || !check) {
        nx_log_error("plugin %s: readiness check needs a name and a function", p->desc->name);
        p->failed = 1;
        return NX_ERR;
    }
    nx_health_add_check(p, name, check);
    return NX_OK;
}

int nx_middleware(nx_plugin *p, const char *name, int priority, nx_before_fn before,
                  nx_after_fn after)
{
    if (!before && !after) {
        nx_log_error("plugin %s: middleware '%s' has neither a before nor an after function",
                     p->desc->name, name ? name : "?");
        p->failed = 1;
        return NX_ERR;
    }
    nx_middleware_add(p, name, priority, before, after);
    return NX_OK;
}

int nx_on_worker(nx_plugin *p, nx_worker_start_fn start, nx_worker_stop_fn stop)
{
    p->worker_start = start;
    p->worker_stop = stop;
    return NX_OK;
}

int nx_plugins_worker_start(void)
{
    for (size_t i = 0; i < nplugins; i++) {
        nx_plugin *p = plugins[i];
        if (p->state == NX_PLUGIN_LOADED && p->worker_start && p->worker_start(p) != 0) {
            nx_log_error("plugin %s: its worker start hook failed; this worker exits",
                         p->desc->name);
            return NX_ERR;
        }
    }
    return NX_OK;
}

void nx_plugins_worker_stop(void)
{
    for (size_t i = nplugins; i-- > 0;)
        if (plugins[i]->state == NX_PLUGIN_LOADED && plugins[i]->worker_stop)
            plugins[i]->worker_stop(plugins[i]);
}

/* ---- discover ---- */

/*
 * dlopen of a private copy (see the file comment). The copy is opened by its
 * /proc/self/fd path, and the dynamic linker also knows objects by that name: the fd stays
 * open as long as the plugin is loaded (*fd), or a later copy given the same fd number
 * would be taken for this one.
 */
static void *open_copy(const char *path, int *fd)
{
    *fd = -1;
    int src = open(path, O_RDONLY | O_CLOEXEC);
    if (src < 0)
        return NULL;
    struct stat st;
    int mem = fstat(src, &st) == 0 ? memfd_create("nexus-plugin", MFD_CLOEXEC) : -1;
    void *h = NULL;
    if (mem >= 0) {
        off_t off = 0;
        while (off < st.st_size && sendfile(mem, src, &off, (size_t)(st.st_size - off)) > 0)
            ;
        char fdpath[64];
        snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", mem);
        if (off == st.st_size)
            h = dlopen(fdpath, RTLD_NOW | RTLD_LOCAL);
        if (h)
            *fd = mem;
        else
            close(mem);
    }
    close(src);
    return h;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct load_ctx {
    const nx_config *cfg;
    nx_router *router;
    bool fresh; /* reload: open private copies */
    bool strict;
    bool bad_config; /* the error returned is the configuration's (exit 78) */
    char *err;
    size_t errlen;
} load_ctx;

/*
 * A failure: in strict mode it becomes the error returned; otherwise it is logged and p
 * (when there is one) is marked skipped. Returns NX_ERR when loading must stop. A
 * config_failure is one that only an edit of the configuration or of the plugins folder
 * can mend, so `nexus serve` exits with EX_CONFIG and supervisors do not restart it.
 */
static int vfailure(load_ctx *lc, nx_plugin *p, bool config, const char *fmt, va_list ap)
{
    char msg[768];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (lc->strict) {
        snprintf(lc->err, lc->errlen, "%s", msg);
        lc->bad_config = config;
        return NX_ERR;
    }
    nx_log_error("%s; plugins.strict is false, continuing without it", msg);
    if (p) {
        p->state = NX_PLUGIN_SKIPPED;
        free(p->why);
        p->why = nx_xstrdup(msg);
    }
    return NX_OK;
}

static int failure(load_ctx *lc, nx_plugin *p, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int config_failure(load_ctx *lc, nx_plugin *p, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int failure(load_ctx *lc, nx_plugin *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfailure(lc, p, false, fmt, ap);
    va_end(ap);
    return rc;
}

static int config_failure(load_ctx *lc, nx_plugin *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfailure(lc, p, true, fmt, ap);
    va_end(ap);
    return rc;
}

static int discover_one(load_ctx *lc, const char *path)
{
    /* RTLD_NOW: an unresolved symbol is an error here, not a crash on first request. */
    int copy_fd = -1;
    void *h = lc->fresh ? open_copy(path, &copy_fd) : dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return failure(lc, NULL, "plugin %s: cannot load: %s", path, dlerror());
    const nx_plugin_desc *d = dlsym(h, "nexus_plugin");
    const char *problem = NULL;
    char buf[256];
    if (!d) {
        problem = "no 'nexus_plugin' descriptor (declare it with NEXUS_PLUGIN)";
    } else if (d->abi_version != NX_ABI_VERSION) {
        snprintf(buf, sizeof(buf),
                 "built for plugin ABI %d, this server has ABI %d; rebuild "
                 "it against these headers",
                 d->abi_version, NX_ABI_VERSION);
        problem = buf;
    } else if (!d->name || !*d->name || !d->init) {
        problem = "its descriptor needs a name and an init function";
    }
    for (size_t i = 0; !problem && i < nplugins; i++) {
        if (strcmp(plugins[i]->desc->name, d->name) == 0) {
            snprintf(buf, sizeof(buf), "name '%s' is already used by %s", d->name,
                     plugins[i]->path);
            problem = buf;
        }
    }
    if (problem) {
        dlclose(h);
        if (copy_fd >= 0)
            close(copy_fd);
        return failure(lc, NULL, "plugin %s: %s", path, problem);
    }
    nx_plugin *p = nx_xcalloc(1, sizeof(*p));
    p->desc = d;
    p->path = nx_xstrdup(path);
    p->handle = h;
    p->copy_fd = copy_fd;
    p->router = lc->router;
    p->state = NX_PLUGIN_FOUND;
    plugins = nx_xrealloc(plugins, (nplugins + 1) * sizeof(*plugins));
    plugins[nplugins++] = p;
    return NX_OK;
}

static int discover_dir(load_ctx *lc, const char *dir)
{
    DIR *dp = opendir(dir);
    if (!dp)
        return config_failure(lc, NULL, "plugins folder %s cannot be read: %s", dir,
                              strerror(errno));
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len > 3 && strcmp(e->d_name + len - 3, ".so") == 0 && e->d_name[0] != '.') {
            names = nx_xrealloc(names, (n + 1) * sizeof(*names));
            names[n++] = nx_xstrdup(e->d_name);
        }
    }
    closedir(dp);
    qsort(names, n, sizeof(*names), cmp_str);
    int rc = NX_OK;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (rc == NX_OK)
            rc = discover_one(lc, path);
        free(names[i]);
    }
    free(names);
    return rc;
}

/* ---- order ---- */

static nx_plugin *find_plugin(const char *name)
{
    for (size_t i = 0; i < nplugins; i++)
        if (strcmp(plugins[i]->desc->name, name) == 0)
            return plugins[i];
    return NULL;
}

static bool list_has(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, ", ");
        if (len == n && strncmp(p, name, n) == 0)
            return true;
        p += len;
    }
    return false;
}

/* plugins.enabled: only the named plugins; a name that was not found is a failure. */
static int apply_enabled(load_ctx *lc)
{
    const char *enabled = nx_config_get(lc->cfg, "plugins.enabled", NULL);
    if (!enabled || !*enabled)
        return NX_OK;
    for (size_t i = 0; i < nplugins; i++) {
        if (!list_has(enabled, plugins[i]->desc->name)) {
            plugins[i]->state = NX_PLUGIN_SKIPPED;
            plugins[i]->why = nx_xstrdup("not in plugins.enabled");
        }
    }
    char copy[1024];
    snprintf(copy, sizeof(copy), "%s", enabled);
    char *save = NULL;
    for (char *n = strtok_r(copy, ", ", &save); n; n = strtok_r(NULL, ", ", &save))
        if (!find_plugin(n) &&
            config_failure(lc, NULL, "plugins.enabled names '%s', which is in no plugins folder",
                           n) != NX_OK)
            return NX_ERR;
    return NX_OK;
}

/* True when every dependency of p is loaded or ordered before it. */
static bool deps_ready(const nx_plugin *p, nx_plugin *const *done, size_t ndone)
{
    for (const char *const *d = p->desc->depends; d && *d; d++) {
        bool ok = false;
        for (size_t i = 0; i < ndone && !ok; i++)
            ok = strcmp(done[i]->desc->name, *d) == 0;
        if (!ok)
            return false;
    }
    return true;
}

/*
 * Orders plugins so that each comes after its dependencies, the alphabetically first
 * ready one each time (Kahn's algorithm). Missing dependencies and cycles are failures.
 */
static int order(load_ctx *lc)
{
    for (size_t i = 0; i < nplugins; i++) {
        nx_plugin *p = plugins[i];
        for (const char *const *d = p->desc->depends; p->state == NX_PLUGIN_FOUND && d && *d; d++) {
            nx_plugin *dep = find_plugin(*d);
            if (!dep || dep->state == NX_PLUGIN_SKIPPED) {
                if (config_failure(lc, p, "plugin %s (%s) depends on '%s', which %s", p->desc->name,
                                   p->path, *d,
                                   dep ? "is not loaded" : "is in no plugins folder") != NX_OK)
                    return NX_ERR;
                i = (size_t)-1; /* a skip may strand others: check everything again */
                break;
            }
        }
    }
    nx_plugin **sorted = nx_xcalloc(nplugins ? nplugins : 1, sizeof(*sorted));
    size_t nsorted = 0, nskipped = 0;
    for (size_t i = 0; i < nplugins; i++)
        if (plugins[i]->state == NX_PLUGIN_SKIPPED)
            sorted[nplugins - 1 - nskipped++] = plugins[i]; /* kept, at the end */
    size_t want = nplugins - nskipped;
    while (nsorted < want) {
        nx_plugin *next = NULL;
        for (size_t i = 0; i < nplugins; i++) {
            nx_plugin *p = plugins[i];
            bool placed = false;
            for (size_t j = 0; j < nsorted && !placed; j++)
                placed = sorted[j] == p;
            if (placed || p->state == NX_PLUGIN_SKIPPED || !deps_ready(p, sorted, nsorted))
                continue;
            if (!next || strcmp(p->desc->name, next->desc->name) < 0)
                next = p;
        }
        if (!next) {
            char names[512] = "";
            size_t n = 0;
            for (size_t i = 0; i < nplugins; i++) {
                bool placed = false;
                for (size_t j = 0; j < nsorted && !placed; j++)
                    placed = sorted[j] == plugins[i];
                if (!placed && plugins[i]->state != NX_PLUGIN_SKIPPED && n < sizeof(names))
                    n += (size_t)snprintf(names + n, sizeof(names) - n, "%s%s", n ? ", " : "",
                                          plugins[i]->desc->name);
            }
            free(sorted);
            snprintf(lc->err, lc->errlen, "plugins depend on each other in a cycle: %s", names);
            lc->bad_config = true;
            return NX_ERR; /* no order exists: not something strict=false can skip */
        }
        sorted[nsorted++] = next;
    }
    memcpy(plugins, sorted, nplugins * sizeof(*plugins));
    free(sorted);
    return NX_OK;
}

/* ---- init ---- */

static void drop_registrations(nx_plugin *p)
{
    nx_router_remove_owner(p->router, p->desc->name);
    nx_health_remove_owner(p);
    nx_middleware_remove_owner(p);
    nx_pubsub_remove_owner(p);
    p->worker_start = NULL;
    p->worker_stop = NULL;
}

static int init_all(load_ctx *lc, bool *claimed)
{
    for (size_t i = 0; i < nplugins; i++) {
        nx_plugin *p = plugins[i];
        if (p->state != NX_PLUGIN_FOUND)
            continue;
        if (!deps_ready(p, plugins, 0)) {
            /* deps_ready with nothing done is false only when p has dependencies: check
             * that each one really loaded (one may have been skipped just now). */
            for (const char *const *d = p->desc->depends; d && *d; d++) {
                nx_plugin *dep = find_plugin(*d);
                if (dep && dep->state != NX_PLUGIN_LOADED) {
                    if (failure(lc, p, "plugin %s (%s) depends on '%s', which failed to load",
                                p->desc->name, p->path, *d) != NX_OK)
                        return NX_ERR;
                    break;
                }
            }
            if (p->state != NX_PLUGIN_FOUND)
                continue;
        }
        char err[768];
        if (nx_plugin_settings_resolve(p, lc->cfg, claimed, err, sizeof(err)) != NX_OK) {
            if (config_failure(lc, p, "plugin %s (%s): %s", p->desc->name, p->path, err) != NX_OK)
                return NX_ERR;
            continue;
        }
        int rc = p->desc->init(p);
        if (rc != 0 || p->failed) {
            drop_registrations(p);
            if (failure(lc, p, "plugin %s (%s): init failed%s", p->desc->name, p->path,
                        p->failed ? " (see the error above)" : "") != NX_OK)
                return NX_ERR;
            continue;
        }
        p->state = NX_PLUGIN_LOADED;
        nx_log_info("plugin %s %s loaded from %s", p->desc->name,
                    p->desc->version ? p->desc->version : "?", p->path);
    }
    return NX_OK;
}

static void plugin_free(nx_plugin *p, bool close_code)
{
    if (p->state == NX_PLUGIN_LOADED && p->desc->fini)
        p->desc->fini(p);
    nx_health_remove_owner(p);
    nx_middleware_remove_owner(p);
    nx_pubsub_remove_owner(p);
    nx_plugin_settings_free(p);
    if (close_code)
        dlclose(p->handle);
    if (close_code && p->copy_fd >= 0)
        close(p->copy_fd);
    free(p->why);
    free(p->path);
    free(p);
}

void nx_plugins_unload(void)
{
    /* Not dlclosed: the current router may still point at their handlers. */
    while (nplugins)
        plugin_free(plugins[--nplugins], false);
    free(plugins);
    plugins = NULL;
}

int nx_plugins_load(const char *dirs, const nx_config *cfg, nx_router *router, bool fresh,
                    char *err, size_t errlen)
{
    const char *strict = nx_config_get(cfg, "plugins.strict", NULL);
    load_ctx lc = {.cfg = cfg,
                   .router = router,
                   .fresh = fresh,
                   .strict = !strict || strcmp(strict, "false") != 0,
                   .err = err,
                   .errlen = errlen};
    bool *claimed = nx_xcalloc(cfg->nextras ? cfg->nextras : 1, sizeof(bool));
    char *copy = nx_xstrdup(dirs);
    int rc = NX_OK;
    char *save = NULL;
    for (char *d = strtok_r(copy, ":", &save); d && rc == NX_OK; d = strtok_r(NULL, ":", &save))
        rc = discover_dir(&lc, d);
    free(copy);
    if (rc == NX_OK)
        rc = apply_enabled(&lc);
    if (rc == NX_OK)
        rc = order(&lc);
    if (rc == NX_OK)
        rc = init_all(&lc, claimed);
    if (rc == NX_OK &&
        nx_plugin_settings_unclaimed(cfg, claimed, plugins, nplugins, err, errlen) != NX_OK) {
        rc = NX_ERR;
        lc.bad_config = true;
    }
    free(claimed);
    return rc == NX_OK ? NX_OK : lc.bad_config ? NX_PLUGINS_BAD_CONFIG : NX_ERR;
}

void nx_plugins_each(void (*fn)(const nx_plugin *p, void *arg), void *arg)
{
    for (size_t i = 0; i < nplugins; i++)
        fn(plugins[i], arg);
}

const char *nx_plugin_state_name(const nx_plugin *p, const char **why)
{
    if (why)
        *why = p->why;
    return p->state == NX_PLUGIN_LOADED    ? "loaded"
           : p->state == NX_PLUGIN_SKIPPED ? "skipped"
                                           : "found";
}

const char *nx_plugin_path(const nx_plugin *p)
{
    return p->path;
}

const char *nx_plugin_version(const nx_plugin *p)
{
    return p->desc->version ? p->desc->version : "";
}

/* Swapping whole plugin sets (reload): the caller keeps the old set while a new loads. */
nx_plugin_set nx_plugins_take(void)
{
    nx_plugin_set s = {plugins, nplugins};
    plugins = NULL;
    nplugins = 0;
    return s;
}

void nx_plugins_restore(nx_plugin_set s)
{
    nx_plugins_unload();
    plugins = s.plugins;
    nplugins = s.n;
}

void nx_plugin_set_forget(nx_plugin_set s)
{
    for (size_t i = 0; i < s.n; i++) {
        nx_health_remove_owner(s.plugins[i]);
        nx_middleware_remove_owner(s.plugins[i]);
        nx_pubsub_remove_owner(s.plugins[i]);
    }
}

void nx_plugin_set_free(nx_plugin_set s)
{
    /* Only once no router refers to the set's handlers: its code can then go. */
    while (s.n)
        plugin_free(s.plugins[--s.n], true);
    free(s.plugins);
}
