/*
 * config.c - the settings table and its two sources so far: NEXUS_* variables and flags.
 */
#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"

enum kind { K_STR, K_INT, K_DURATION, K_SIZE };

typedef struct setting {
    const char *key; /* section.name: the variable and the flag derive from it */
    enum kind kind;
    size_t offset;
    const char *def;
    int64_t min, max; /* for K_INT and K_SIZE */
    const char *help;
    const char *flag; /* when the key's last part would be ambiguous as a flag */
} setting;

#define OFF(f) offsetof(nx_config, f)

static const setting settings[] = {
    {"app.host", K_STR, OFF(host), "127.0.0.1", 0, 0, "address to listen on"},
    {"app.port", K_INT, OFF(port), "8000", 1, 65535, "port to listen on"},
    {"app.workers", K_INT, OFF(workers), "0", 0, 1024, "worker processes (0 = CPU count)"},
    {"app.environment", K_STR, OFF(environment), "development", 0, 0,
     "development or production"},
    {"logging.access_log", K_STR, OFF(access_log), "stdout", 0, 0,
     "access log: off, stdout or a file path"},
    {"logging.level", K_STR, OFF(log_level), "info", 0, 0, "debug, info, warn or error",
     "--log-level"},
    {"plugins.dir", K_STR, OFF(plugins_dir), "", 0, 0,
     "folders of plugins, separated by ':' (default: plugins beside the binary)",
     "--plugins-dir"},
    {"server.pid_file", K_STR, OFF(pid_file), "", 0, 0, "write the master's pid here"},
    {"server.shutdown_delay", K_DURATION, OFF(shutdown_delay_ms), "0", 0, 0,
     "on SIGTERM, serve this long with /ready at 503 before closing the listener"},
    {"server.graceful_timeout", K_DURATION, OFF(graceful_timeout_ms), "30s", 0, 0,
     "time in-flight requests get to finish at shutdown or reload"},
    {"server.keepalive_timeout", K_DURATION, OFF(http.keepalive_ms), "5s", 0, 0,
     "idle time before a keep-alive connection is closed"},
    {"server.header_timeout", K_DURATION, OFF(http.header_ms), "10s", 0, 0,
     "time to receive a request head (408 after)"},
    {"server.body_timeout", K_DURATION, OFF(http.body_ms), "10s", 0, 0,
     "longest pause while receiving a body (408 after)"},
    {"server.handler_timeout", K_DURATION, OFF(http.handler_ms), "30s", 0, 0,
     "deadline of a request's waits (504 after)"},
    {"server.send_timeout", K_DURATION, OFF(http.send_ms), "60s", 0, 0,
     "longest pause of a client that does not read its response"},
    {"server.worker_connections", K_INT, OFF(worker_connections), "1000", 1, 1000000,
     "open connections per worker"},
    {"server.max_requests", K_INT, OFF(max_requests), "0", 0, INT64_MAX,
     "recycle a worker after this many requests (0 = never)"},
    {"server.max_requests_jitter", K_INT, OFF(max_requests_jitter), "0", 0, INT64_MAX,
     "random extra requests per worker before recycling"},
    {"server.client_max_body_size", K_SIZE, OFF(http.max_body), "100M", 0, INT64_MAX,
     "largest request body (413 beyond)"},
    {"server.large_client_header_buffer", K_SIZE, OFF(http.limits.max_field), "8k", 256,
     1 << 20, "longest request line (414) or header field (431)"},
    {"server.max_header_size", K_SIZE, OFF(http.limits.max_head), "32k", 1024, 16 << 20,
     "largest request head in total (431 beyond)"},
};

static void set_int_field(nx_config *cfg, const setting *s, int64_t v)
{
    char *f = (char *)cfg + s->offset;
    if (s->offset == OFF(port) || s->offset == OFF(workers))
        *(int *)f = (int)v;
    else
        *(int64_t *)f = v;
}

/* Applies one textual value; on error writes what was expected into err. */
static int apply(nx_config *cfg, const setting *s, const char *val, char *err, size_t errlen)
{
    char *f = (char *)cfg + s->offset;
    switch (s->kind) {
    case K_STR:
        free(*(char **)f);
        *(char **)f = nx_xstrdup(val);
        return NX_OK;
    case K_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(val, &end, 10);
        bool starts_ok = isdigit((unsigned char)val[0]) || val[0] == '-';
        if (!starts_ok || errno || end == val || *end || v < s->min || v > s->max) {
            snprintf(err, errlen, "expected an integer from %lld to %lld, got '%s'",
                     (long long)s->min, (long long)s->max, val);
            return NX_ERR;
        }
        set_int_field(cfg, s, v);
        return NX_OK;
    }
    case K_DURATION: {
        uint64_t ms;
        if (nx_parse_duration_ms(val, &ms) != 0) {
            snprintf(err, errlen, "expected a duration such as 500ms, 30s or 2m, got '%s'", val);
            return NX_ERR;
        }
        *(uint64_t *)f = ms;
        return NX_OK;
    }
    case K_SIZE: {
        uint64_t b;
        if (nx_parse_size(val, &b) != 0 || b < (uint64_t)s->min || b > (uint64_t)s->max) {
            snprintf(err, errlen, "expected a size such as 8k, 100M or 1g (%lld to %lld bytes), "
                     "got '%s'", (long long)s->min, (long long)s->max, val);
            return NX_ERR;
        }
        if (s->offset == OFF(http.limits.max_field) || s->offset == OFF(http.limits.max_head))
            *(size_t *)f = (size_t)b;
        else
            *(uint64_t *)f = b;
        return NX_OK;
    }
    }
    return NX_ERR;
}

static void env_name(const setting *s, char *out, size_t len)
{
    size_t n = (size_t)snprintf(out, len, "NEXUS_");
    for (const char *p = s->key; *p && n + 1 < len; p++)
        out[n++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
    out[n] = '\0';
}

static void flag_name(const setting *s, char *out, size_t len)
{
    if (s->flag) {
        snprintf(out, len, "%s", s->flag);
        return;
    }
    const char *dot = strrchr(s->key, '.');
    size_t n = (size_t)snprintf(out, len, "--");
    for (const char *p = dot + 1; *p && n + 1 < len; p++)
        out[n++] = *p == '_' ? '-' : *p;
    out[n] = '\0';
}

void nx_config_defaults(nx_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    nx_http_settings_default(&cfg->http);
    char err[256];
    for (size_t i = 0; i < NX_ARRAY_LEN(settings); i++)
        NX_ASSERT(apply(cfg, &settings[i], settings[i].def, err, sizeof(err)) == NX_OK);
}

static const setting *find_flag(const char *arg, size_t len)
{
    for (size_t i = 0; i < NX_ARRAY_LEN(settings); i++) {
        char flag[64];
        flag_name(&settings[i], flag, sizeof(flag));
        if (strlen(flag) == len && memcmp(flag, arg, len) == 0)
            return &settings[i];
    }
    return NULL;
}

int nx_config_load(nx_config *cfg, int argc, char **argv, int first)
{
    char err[320];
    for (size_t i = 0; i < NX_ARRAY_LEN(settings); i++) {
        char name[64];
        env_name(&settings[i], name, sizeof(name));
        const char *v = getenv(name);
        if (v && apply(cfg, &settings[i], v, err, sizeof(err)) != NX_OK) {
            fprintf(stderr, "nexus: invalid %s (environment, %s): %s\n", name, settings[i].key,
                    err);
            return NX_ERR;
        }
    }
    const char *cf = getenv("NEXUS_CONFIG");
    if (cf) {
        free(cfg->config_file);
        cfg->config_file = nx_xstrdup(cf);
    }
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[i + 1] : NULL);
        bool is_config = len == 8 && memcmp(arg, "--config", 8) == 0;
        const setting *s = is_config ? NULL : find_flag(arg, len);
        if (!s && !is_config) {
            fprintf(stderr, "nexus: unknown option '%.*s' (see nexus serve --help)\n", (int)len,
                    arg);
            return NX_ERR;
        }
        if (!val) {
            fprintf(stderr, "nexus: option '%s' needs a value\n", arg);
            return NX_ERR;
        }
        if (!eq)
            i++;
        if (is_config) {
            free(cfg->config_file);
            cfg->config_file = nx_xstrdup(val);
            continue;
        }
        if (apply(cfg, s, val, err, sizeof(err)) != NX_OK) {
            fprintf(stderr, "nexus: invalid %.*s (command line, %s): %s\n", (int)len, arg, s->key,
                    err);
            return NX_ERR;
        }
    }
    if (cfg->workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->workers = n > 0 ? (int)n : 1;
    }
    if (cfg->http.limits.max_head < cfg->http.limits.max_field) {
        fprintf(stderr, "nexus: server.max_header_size must be at least "
                        "server.large_client_header_buffer\n");
        return NX_ERR;
    }
    cfg->http.limits.max_request_line = cfg->http.limits.max_field;
    return NX_OK;
}

void nx_config_usage(FILE *out)
{
    fprintf(out, "options (flag, environment variable, default):\n");
    fprintf(out, "  %-32s %-40s %s\n", "--config FILE", "NEXUS_CONFIG", "config/config.yaml");
    for (size_t i = 0; i < NX_ARRAY_LEN(settings); i++) {
        char flag[64], env[64];
        flag_name(&settings[i], flag, sizeof(flag));
        env_name(&settings[i], env, sizeof(env));
        fprintf(out, "  %-32s %-40s %s\n      %s\n", flag, env,
                *settings[i].def ? settings[i].def : "-", settings[i].help);
    }
}

void nx_config_free(nx_config *cfg)
{
    for (size_t i = 0; i < NX_ARRAY_LEN(settings); i++)
        if (settings[i].kind == K_STR)
            free(*(char **)((char *)cfg + settings[i].offset));
    free(cfg->config_file);
    memset(cfg, 0, sizeof(*cfg));
}
