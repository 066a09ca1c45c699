/*
 * settings.c - a plugin's declared settings: resolved from the configuration, checked,
 * and read back through the nx_plugin_config accessors.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/util.h"
#include "plugin/loader.h"
#include "plugin/plugin_impl.h"

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

/*
 * Resolves every declared setting of p: default < plugins.<name>.<key> in the file <
 * NEXUS_PLUGINS_<NAME>_<KEY> (or _FILE). Marks each extra it uses in claimed.
 */
int nx_plugin_settings_resolve(nx_plugin *p, const nx_config *cfg, bool *claimed, char *err,
                               size_t errlen)
{
    const nx_plugin_setting *decl = p->desc->settings;
    size_t n = 0;
    while (decl && decl[n].name)
        n++;
    p->values = nx_xcalloc(n ? n : 1, sizeof(char *));
    p->sources = nx_xcalloc(n ? n : 1, sizeof(char *));
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
            if (is_file && !(owned = nx_config_read_secret(x->source, x->value, err, errlen)))
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
        p->sources[i] = nx_xstrdup(source);
    }
    return NX_OK;
}

void nx_plugin_settings_free(nx_plugin *p)
{
    for (size_t i = 0; i < p->nvalues; i++) {
        free(p->values[i]);
        if (p->sources)
            free(p->sources[i]);
    }
    free(p->values);
    free(p->sources);
}

void nx_plugin_settings_each(const nx_plugin *p,
                             void (*fn)(const nx_plugin_setting *decl, const char *value,
                                        const char *source, void *arg),
                             void *arg)
{
    for (size_t i = 0; p->values && i < p->nvalues; i++)
        if (p->values[i])
            fn(setting_at(p, i), p->values[i], p->sources[i], arg);
}

/* A value nobody claimed: for a loaded plugin it is an error (a misspelt key must not be
 * silently ignored); for a plugin not loaded, a warning (it may be disabled here). */
int nx_plugin_settings_unclaimed(const nx_config *cfg, const bool *claimed,
                                 nx_plugin *const *plugins, size_t n, char *err, size_t errlen)
{
    for (size_t j = 0; cfg && j < cfg->nextras; j++) {
        if (claimed[j])
            continue;
        const nx_config_extra *x = &cfg->extras[j];
        for (size_t i = 0; i < n; i++) {
            if (plugins[i]->state != NX_PLUGIN_LOADED)
                continue;
            const char *name = plugins[i]->desc->name;
            char prefix[160], var_prefix[160];
            snprintf(prefix, sizeof(prefix), "plugins.%s.", name);
            setting_var(name, "", var_prefix, sizeof(var_prefix));
            if (strncmp(x->key, prefix, strlen(prefix)) == 0 ||
                strncmp(x->key, var_prefix, strlen(var_prefix)) == 0) {
                char names[512] = "";
                size_t used = 0;
                for (size_t k = 0; k < plugins[i]->nvalues && used < sizeof(names); k++)
                    used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s",
                                             k ? ", " : "", setting_at(plugins[i], k)->name);
                snprintf(err, errlen, "%s: plugin %s has no setting '%s' (it declares: %s)",
                         x->source, name, x->key, *names ? names : "none");
                return NX_ERR;
            }
        }
        nx_log_warn("%s: %s is not a setting of any loaded plugin; ignored", x->source, x->key);
    }
    return NX_OK;
}
