/*
 * loader.c - dlopen, the descriptor check, init, and the registration API plugins call.
 *
 * The descriptor is read and checked before any plugin code runs: a plugin built against
 * another ABI could otherwise crash the server inside its init.
 */
#include "plugin/loader.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/util.h"
#include "observe/health.h"

struct nx_plugin {
    const nx_plugin_desc *desc;
    char *path;
    void *handle;
    nx_router *router;
    int failed;     /* a registration inside init failed */
    char **values;  /* one per declared setting, checked */
    size_t nvalues;
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

/* ---- settings ---- */

static const nx_plugin_setting *setting_at(const nx_plugin *p, size_t i)
{
    return &p->desc->settings[i];
}

const char *nx_plugin_config(const nx_plugin *p, const char *name)
{
    for (size_t i = 0; i < p->nvalues; i++)
        if (strcmp(setting_at(p, i)->name, name) == 0)
            return p->values[i];
    return NULL;
}

int64_t nx_plugin_config_int(const nx_plugin *p, const char *name)
{
    const char *v = nx_plugin_config(p, name);
    return v ? strtoll(v, NULL, 10) : 0;
}

bool nx_plugin_config_bool(const nx_plugin *p, const char *name)
{
    const char *v = nx_plugin_config(p, name);
    return v && (strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0 ||
                 strcasecmp(v, "on") == 0 || strcmp(v, "1") == 0);
}

uint64_t nx_plugin_config_ms(const nx_plugin *p, const char *name)
{
    uint64_t ms = 0;
    const char *v = nx_plugin_config(p, name);
    return v && nx_parse_duration_ms(v, &ms) == 0 ? ms : 0;
}

uint64_t nx_plugin_config_size(const nx_plugin *p, const char *name)
{
    uint64_t b = 0;
    const char *v = nx_plugin_config(p, name);
    return v && nx_parse_size(v, &b) == 0 ? b : 0;
}

/* NEXUS_PLUGINS_<PLUGIN>_<NAME>, upper-cased, '-' and '.' as '_'. */
static void setting_var(const char *plugin, const char *name, char *out, size_t len)
{
    size_t n = (size_t)snprintf(out, len, "NEXUS_PLUGINS_");
    for (const char *s = plugin; *s && n + 2 < len; s++)
        out[n++] = isalnum((unsigned char)*s) ? (char)toupper((unsigned char)*s) : '_';
    out[n++] = '_';
    for (const char *s = name; *s && n + 1 < len; s++)
        out[n++] = isalnum((unsigned char)*s) ? (char)toupper((unsigned char)*s) : '_';
    out[n] = '\0';
}

/* Reads a _FILE secret: the file's content without one trailing newline. */
static char *read_value_file(const char *path, char *err, size_t errlen, const char *source)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot read %s: %s", source, path, strerror(errno));
        return NULL;
    }
    char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (n && buf[n - 1] == '\n')
        buf[--n] = '\0';
    return nx_xstrdup(buf);
}

/*
 * Resolves every declared setting of p: default < plugins.<name>.<key> in the file <
 * NEXUS_PLUGINS_<NAME>_<KEY> (or _FILE). Marks each extra it uses in claimed.
 */
static int resolve_settings(nx_plugin *p, const nx_config *cfg, bool *claimed, char *err,
                            size_t errlen)
{
    const nx_plugin_setting *decl = p->desc->settings;
    size_t n = 0;
    while (decl && decl[n].name)
        n++;
    p->values = nx_xcalloc(n ? n : 1, sizeof(char *));
    p->nvalues = n;
    for (size_t i = 0; i < n; i++) {
        char key[256], var[160], file_var[168];
        snprintf(key, sizeof(key), "plugins.%s.%s", p->desc->name, decl[i].name);
        setting_var(p->desc->name, decl[i].name, var, sizeof(var));
        snprintf(file_var, sizeof(file_var), "%s_FILE", var);
        const char *value = decl[i].def ? decl[i].def : "";
        const char *source = "default";
        char *owned = NULL;
        for (size_t j = 0; cfg && j < cfg->nextras; j++) {
            const nx_config_extra *x = &cfg->extras[j];
            bool is_file = strcmp(x->key, file_var) == 0;
            if (strcmp(x->key, key) != 0 && strcmp(x->key, var) != 0 && !is_file)
                continue;
            claimed[j] = true;
            free(owned);
            owned = NULL;
            source = x->source;
            value = x->value;
            if (is_file && !(owned = read_value_file(x->value, err, errlen, x->source)))
                return NX_ERR;
            if (owned)
                value = owned;
        }
        char why[256];
        if (!nx_config_check_typed((int)decl[i].type, value, why, sizeof(why))) {
            snprintf(err, errlen, "%s: %s: %s", source, key, why);
            free(owned);
            return NX_ERR;
        }
        p->values[i] = owned ? owned : nx_xstrdup(value);
    }
    return NX_OK;
}

static void free_values(nx_plugin *p)
{
    for (size_t i = 0; i < p->nvalues; i++)
        free(p->values[i]);
    free(p->values);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int load_one(const char *path, const nx_config *cfg, bool *claimed, nx_router *router,
                    char *err, size_t errlen)
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
    if (resolve_settings(p, cfg, claimed, err, errlen) != NX_OK) {
        free_values(p);
        free(p->path);
        free(p);
        dlclose(h);
        return NX_ERR;
    }
    int rc = d->init(p);
    if (rc != 0 || p->failed) {
        snprintf(err, errlen, "plugin %s (%s): init failed%s", d->name, path,
                 p->failed ? " (see the error above)" : "");
        free_values(p);
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

static int load_dir(const char *dir, const nx_config *cfg, bool *claimed, nx_router *router,
                    char *err, size_t errlen)
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
        if (rc == NX_OK && load_one(path, cfg, claimed, router, err, errlen) != NX_OK)
            rc = NX_ERR;
        free(names[i]);
    }
    free(names);
    return rc;
}

/* A value nobody claimed: for a loaded plugin it is an error (a misspelt key must not be
 * silently ignored); for a plugin not loaded, a warning (it may be disabled here). */
static int check_unclaimed(const nx_config *cfg, const bool *claimed, char *err, size_t errlen)
{
    for (size_t j = 0; cfg && j < cfg->nextras; j++) {
        if (claimed[j])
            continue;
        const nx_config_extra *x = &cfg->extras[j];
        for (size_t i = 0; i < nloaded; i++) {
            const char *name = loaded[i]->desc->name;
            char prefix[160], var_prefix[160];
            snprintf(prefix, sizeof(prefix), "plugins.%s.", name);
            setting_var(name, "", var_prefix, sizeof(var_prefix));
            if (strncmp(x->key, prefix, strlen(prefix)) == 0 ||
                strncmp(x->key, var_prefix, strlen(var_prefix)) == 0) {
                char names[512] = "";
                size_t n = 0;
                for (size_t k = 0; k < loaded[i]->nvalues && n < sizeof(names); k++)
                    n += (size_t)snprintf(names + n, sizeof(names) - n, "%s%s", k ? ", " : "",
                                          setting_at(loaded[i], k)->name);
                snprintf(err, errlen, "%s: plugin %s has no setting '%s' (it declares: %s)",
                         x->source, name, x->key, *names ? names : "none");
                return NX_ERR;
            }
        }
        nx_log_warn("%s: %s is not a setting of any loaded plugin; ignored", x->source, x->key);
    }
    return NX_OK;
}

int nx_plugins_load(const char *dirs, const nx_config *cfg, nx_router *router, char *err,
                    size_t errlen)
{
    bool *claimed = nx_xcalloc(cfg && cfg->nextras ? cfg->nextras : 1, sizeof(bool));
    char *copy = nx_xstrdup(dirs);
    int rc = NX_OK;
    char *save = NULL;
    for (char *d = strtok_r(copy, ":", &save); d && rc == NX_OK; d = strtok_r(NULL, ":", &save))
        rc = load_dir(d, cfg, claimed, router, err, errlen);
    free(copy);
    if (rc == NX_OK)
        rc = check_unclaimed(cfg, claimed, err, errlen);
    free(claimed);
    return rc;
}

void nx_plugins_unload(void)
{
    while (nloaded) {
        nx_plugin *p = loaded[--nloaded];
        if (p->desc->fini)
            p->desc->fini(p);
        free_values(p);
        free(p->path);
        free(p);
    }
    free(loaded);
    loaded = NULL;
}
