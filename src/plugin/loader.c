/*
 * loader.c - dlopen, the descriptor check, init, and the registration API plugins call.
 *
 * The descriptor is read and checked before any plugin code runs: a plugin built against
 * another ABI could otherwise crash the server inside its init.
 */
#include "plugin/loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "observe/health.h"

struct nx_plugin {
    const nx_plugin_desc *desc;
    char *path;
    void *handle;
    nx_router *router;
    int failed; /* a registration inside init failed */
};

static nx_plugin **loaded;
static size_t nloaded;

size_t nx_plugins_count(void)
{
    return nloaded;
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
    nx_health_add_check(name, check);
    return NX_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int load_one(const char *path, nx_router *router, char *err, size_t errlen)
{
    /* RTLD_NOW: an unresolved symbol is an error here, not a crash on first request. */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(err, errlen, "plugin %s: cannot load: %s", path, dlerror());
        return NX_ERR;
    }
    const nx_plugin_desc *d = dlsym(h, "nexus_plugin");
    if (!d) {
        snprintf(err, errlen, "plugin %s: no 'nexus_plugin' descriptor (declare it with "
                 "NEXUS_PLUGIN)", path);
        dlclose(h);
        return NX_ERR;
    }
    if (d->abi_version != NX_ABI_VERSION) {
        snprintf(err, errlen, "plugin %s: built for plugin ABI %d, this server has ABI %d; "
                 "rebuild it against these headers", path, d->abi_version, NX_ABI_VERSION);
        dlclose(h);
        return NX_ERR;
    }
    if (!d->name || !*d->name || !d->init) {
        snprintf(err, errlen, "plugin %s: descriptor needs a name and an init function", path);
        dlclose(h);
        return NX_ERR;
    }
    for (size_t i = 0; i < nloaded; i++) {
        if (strcmp(loaded[i]->desc->name, d->name) == 0) {
            snprintf(err, errlen, "plugin %s: name '%s' is already used by %s", path, d->name,
                     loaded[i]->path);
            dlclose(h);
            return NX_ERR;
        }
    }
    nx_plugin *p = nx_xcalloc(1, sizeof(*p));
    p->desc = d;
    p->path = nx_xstrdup(path);
    p->handle = h;
    p->router = router;
    int rc = d->init(p);
    if (rc != 0 || p->failed) {
        snprintf(err, errlen, "plugin %s (%s): init failed%s", d->name, path,
                 p->failed ? " (see the error above)" : "");
        free(p->path);
        free(p);
        /* Not dlclosed: routes it registered before failing point into it. Start-up is
         * aborted anyway. */
        return NX_ERR;
    }
    loaded = nx_xrealloc(loaded, (nloaded + 1) * sizeof(*loaded));
    loaded[nloaded++] = p;
    nx_log_info("plugin %s %s loaded from %s", d->name, d->version ? d->version : "?", path);
    return NX_OK;
}

static int load_dir(const char *dir, nx_router *router, char *err, size_t errlen)
{
    DIR *dp = opendir(dir);
    if (!dp) {
        snprintf(err, errlen, "plugins folder %s cannot be read: %m", dir);
        return NX_ERR;
    }
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
        if (rc == NX_OK && load_one(path, router, err, errlen) != NX_OK)
            rc = NX_ERR;
        free(names[i]);
    }
    free(names);
    return rc;
}

int nx_plugins_load(const char *dirs, nx_router *router, char *err, size_t errlen)
{
    char *copy = nx_xstrdup(dirs);
    int rc = NX_OK;
    char *save = NULL;
    for (char *d = strtok_r(copy, ":", &save); d && rc == NX_OK; d = strtok_r(NULL, ":", &save))
        rc = load_dir(d, router, err, errlen);
    free(copy);
    return rc;
}

void nx_plugins_unload(void)
{
    while (nloaded) {
        nx_plugin *p = loaded[--nloaded];
        if (p->desc->fini)
            p->desc->fini(p);
        free(p->path);
        free(p);
    }
    free(loaded);
    loaded = NULL;
}
