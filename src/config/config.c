/*
 * config.c - the schema and the four sources of values.
 *
 * Values are kept as text with their source, checked against the schema as each source
 * is read (so an error can say where the bad value came from), and converted into the
 * typed fields of nx_config once every source has been applied.
 */
#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "config/yaml.h"
#include "cache/cache_impl.h"
#include "db/db_impl.h"
#include "core/util.h"

extern char **environ;

enum kind { K_STR, K_INT, K_BOOL, K_DURATION, K_SIZE, K_ENUM, K_LIST };

enum {
    F_SECRET = 1 << 0, /* never printed */
    F_FLAG = 1 << 1,   /* has a command-line flag */
};

typedef struct setting {
    const char *key;
    enum kind kind;
    const char *def;
    int64_t min, max;    /* K_INT, K_SIZE */
    const char *choices; /* K_ENUM: "a|b|c" */
    unsigned flags;
    const char *help;
    const char *flag; /* when the key's last part would be ambiguous as a flag */
} setting;

#define NOLIM 0, 0, NULL

static const setting schema[] = {
    /* app */
    {"app.name", K_STR, "Nexus", NOLIM, 0, "application name (logs, metrics)"},
    {"app.environment", K_ENUM, "development", 0, 0, "development|testing|staging|production",
     F_FLAG, "deployment environment; production turns on the safety rules"},
    {"app.debug", K_BOOL, "false", NOLIM, F_FLAG, "debug mode (refused in production)"},
    {"app.host", K_STR, "127.0.0.1", NOLIM, F_FLAG, "address to listen on"},
    {"app.port", K_INT, "8000", 1, 65535, NULL, F_FLAG, "port to listen on"},
    {"app.workers", K_INT, "0", 0, 1024, NULL, F_FLAG, "worker processes (0 = CPU count)"},

    /* server */
    {"server.shutdown_delay", K_DURATION, "0", NOLIM, F_FLAG,
     "on SIGTERM, serve this long with /ready at 503 before closing the listener"},
    {"server.graceful_timeout", K_DURATION, "30s", NOLIM, F_FLAG,
     "time in-flight requests get to finish at shutdown or reload"},
    {"server.worker_timeout", K_DURATION, "60s", NOLIM, F_FLAG,
     "a worker busy this long without returning to its event loop (a handler stuck "
     "computing) is killed and replaced (0 = never)"},
    {"server.reload_timeout", K_DURATION, "30s", NOLIM, F_FLAG,
     "on SIGHUP, how long the new workers have to start before the reload is abandoned (0 = "
     "no limit)"},
    {"server.keepalive_timeout", K_DURATION, "5s", NOLIM, F_FLAG,
     "idle time before a keep-alive connection is closed"},
    {"server.header_timeout", K_DURATION, "10s", NOLIM, F_FLAG,
     "time to receive a request head (408 after)"},
    {"server.body_timeout", K_DURATION, "10s", NOLIM, F_FLAG,
     "longest pause while receiving a body (408 after)"},
    {"server.handler_timeout", K_DURATION, "30s", NOLIM, F_FLAG,
     "deadline of a request's waits (504 after)"},
    {"server.send_timeout", K_DURATION, "60s", NOLIM, F_FLAG,
     "longest pause of a client that does not read its response"},
    {"server.worker_connections", K_INT, "1000", 1, 1000000, NULL, F_FLAG,
     "open connections per worker"},
    {"server.max_requests", K_INT, "0", 0, INT64_MAX, NULL, F_FLAG,
     "recycle a worker after this many requests (0 = never)"},
    {"server.max_requests_jitter", K_INT, "0", 0, INT64_MAX, NULL, F_FLAG,
     "random extra requests per worker before recycling"},
    {"server.client_body_buffer_size", K_SIZE, "1M", 0, INT64_MAX, NULL, F_FLAG,
     "request bodies larger than this are received into an unlinked temp file, not memory"},
    {"server.client_body_temp_path", K_STR, "", NOLIM, F_FLAG,
     "folder of those temp files, created at start (empty: $TMPDIR, else /tmp)"},
    {"server.client_max_body_size", K_SIZE, "100M", 0, INT64_MAX, NULL, F_FLAG,
     "largest request body (413 beyond)"},
    {"server.large_client_header_buffer", K_SIZE, "8k", 256, 1 << 20, NULL, F_FLAG,
     "longest request line (414) or header field (431)"},
    {"server.max_header_size", K_SIZE, "32k", 1024, 16 << 20, NULL, F_FLAG,
     "largest request head in total (431 beyond)"},
    {"server.pid_file", K_STR, "", NOLIM, F_FLAG, "write the master's pid here"},

    /* database (the data layer reads these) */
    {"database.type", K_ENUM, "sqlite", 0, 0, "sqlite|postgresql|mysql", 0, "database backend"},
    {"database.url", K_STR, "", NOLIM, F_SECRET,
     "connection URL (postgresql://user:pw@host/db); overrides the parts below"},
    {"database.host", K_STR, "localhost", NOLIM, 0, "database server"},
    {"database.port", K_INT, "5432", 1, 65535, NULL, 0, "database port"},
    {"database.name", K_STR, "nexus", NOLIM, 0, "database name"},
    {"database.user", K_STR, "", NOLIM, 0, "database user"},
    {"database.password", K_STR, "", NOLIM, F_SECRET, "database password"},
    {"database.path", K_STR, "data/nexus.db", NOLIM, 0, "SQLite file"},
    {"database.pool_size", K_INT, "20", 1, 10000, NULL, 0, "pooled connections per worker"},
    {"database.max_overflow", K_INT, "10", 0, 10000, NULL, 0, "extra connections under load"},
    {"database.pool_timeout", K_DURATION, "30s", NOLIM, 0, "wait for a connection (503 after)"},
    {"database.pool_recycle", K_DURATION, "3600s", NOLIM, 0, "reconnect connections this old"},
    {"database.pool_pre_ping", K_BOOL, "true", NOLIM, 0, "check a connection before use"},
    {"database.statement_timeout", K_DURATION, "30s", NOLIM, 0, "longest query (504 after)"},
    {"database.application_name", K_STR, "nexus-app", NOLIM, 0, "name shown by the server"},
    {"database.auto_migrate", K_BOOL, "false", NOLIM, 0, "apply migrations at start"},

    /* cache */
    {"cache.type", K_ENUM, "memory", 0, 0, "memory|redis", 0, "cache backend"},
    {"cache.size", K_SIZE, "64M", 0, INT64_MAX, NULL, 0, "memory cache size"},
    {"cache.default_ttl", K_DURATION, "300s", NOLIM, 0, "time to live when none is given"},
    {"cache.redis.host", K_STR, "localhost", NOLIM, 0, "Redis server"},
    {"cache.redis.port", K_INT, "6379", 1, 65535, NULL, 0, "Redis port"},
    {"cache.redis.password", K_STR, "", NOLIM, F_SECRET, "Redis password"},
    {"cache.redis.db", K_INT, "0", 0, 255, NULL, 0, "Redis database index"},
    {"cache.redis.max_connections", K_INT, "50", 1, 100000, NULL, 0, "connections per worker"},
    {"cache.redis.connect_timeout", K_DURATION, "1s", NOLIM, 0, "Redis connect timeout"},
    {"cache.redis.command_timeout", K_DURATION, "1s", NOLIM, 0, "Redis command timeout"},

    /* auth */
    {"auth.jwt_secret", K_STR, "", NOLIM, F_SECRET, "HMAC key for JWTs (32 bytes or more)"},
    {"auth.jwt_algorithm", K_ENUM, "HS256", 0, 0, "HS256|HS384|HS512", 0, "JWT algorithm"},
    {"auth.token_expiry", K_DURATION, "3600", NOLIM, 0, "access token lifetime"},
    {"auth.refresh_token_expiry", K_DURATION, "604800", NOLIM, 0, "refresh token lifetime"},

    /* security */
    {"security.https_enabled", K_BOOL, "false", NOLIM, 0, "serve TLS"},
    {"security.https_redirect", K_BOOL, "false", NOLIM, 0, "redirect http to https"},
    {"security.rate_limit_enabled", K_BOOL, "false", NOLIM, 0, "limit requests per client"},
    {"security.rate_limit_requests", K_INT, "1000", 1, INT64_MAX, NULL, 0,
     "requests allowed per window"},
    {"security.rate_limit_window", K_DURATION, "3600", NOLIM, 0, "rate limit window"},
    {"security.cors_origins", K_LIST, "", NOLIM, 0, "allowed CORS origins ('*' for any)"},
    {"security.cors_allow_credentials", K_BOOL, "false", NOLIM, 0,
     "allow credentials in CORS requests"},

    /* monitoring */
    {"monitoring.sentry_dsn", K_STR, "", NOLIM, F_SECRET, "Sentry DSN"},
    {"monitoring.sentry_environment", K_STR, "", NOLIM, 0, "Sentry environment"},
    {"monitoring.prometheus_enabled", K_BOOL, "true", NOLIM, 0, "serve /metrics"},
    {"monitoring.metrics_port", K_INT, "9090", 1, 65535, NULL, 0, "port of /metrics"},

    /* logging */
    {"logging.access_log", K_STR, "stdout", NOLIM, F_FLAG,
     "access log: off, stdout or a file path"},
    {"logging.level", K_ENUM, "info", 0, 0, "debug|info|warn|error", F_FLAG, "error log level",
     "--log-level"},

    /* static files */
    {"static.dir", K_STR, "static", NOLIM, 0, "folder served under static.url"},
    {"static.url", K_STR, "/static/", NOLIM, 0, "URL prefix of static files"},
    {"static.media_dir", K_STR, "media", NOLIM, 0, "folder served under static.media_url"},
    {"static.media_url", K_STR, "/media/", NOLIM, 0, "URL prefix of media files"},

    /* plugins */
    {"plugins.dir", K_STR, "", NOLIM, F_FLAG,
     "folders of plugins, separated by ':' (default: plugins beside the binary)", "--plugins-dir"},
    {"plugins.enabled", K_LIST, "", NOLIM, 0, "load only these plugins (default: all)"},
    {"plugins.strict", K_BOOL, "true", NOLIM, 0, "a plugin that fails to load stops start-up"},
};

#define NSCHEMA NX_ARRAY_LEN(schema)

/* Other names the guide uses for the same keys. */
static const struct alias {
    const char *key, *target;
} aliases[] = {
    {"cache.host", "cache.redis.host"},
    {"cache.port", "cache.redis.port"},
    {"cache.password", "cache.redis.password"},
};

/* Variables read verbatim (the guide's code reads DATABASE_URL). */
static const struct alias plain_vars[] = {
    {"DATABASE_URL", "database.url"},
};

/* ---- names ---- */

static void env_name(const char *key, char *out, size_t len)
{
    size_t n = (size_t)snprintf(out, len, "NEXUS_");
    for (const char *p = key; *p && n + 1 < len; p++)
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

static int find_key(const char *key)
{
    for (size_t i = 0; i < NSCHEMA; i++)
        if (strcmp(schema[i].key, key) == 0)
            return (int)i;
    for (size_t i = 0; i < NX_ARRAY_LEN(aliases); i++)
        if (strcmp(aliases[i].key, key) == 0)
            return find_key(aliases[i].target);
    return -1;
}

/* Levenshtein distance, bounded inputs (keys and variable names). */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 64;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            size_t sub =
                prev + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            size_t best = row[j] + 1 < row[j - 1] + 1 ? row[j] + 1 : row[j - 1] + 1;
            row[j] = sub < best ? sub : best;
            prev = cur;
        }
    }
    return row[lb];
}

/* The closest known key (as_env: compare variable names), or NULL when none is close. */
static const char *closest(const char *name, bool as_env, char *buf, size_t len)
{
    size_t best = (size_t)-1;
    const char *found = NULL;
    for (size_t i = 0; i < NSCHEMA + NX_ARRAY_LEN(aliases); i++) {
        const char *key = i < NSCHEMA ? schema[i].key : aliases[i - NSCHEMA].key;
        char cand[96];
        if (as_env)
            env_name(key, cand, sizeof(cand));
        else
            snprintf(cand, sizeof(cand), "%s", key);
        size_t d = distance(name, cand);
        if (d < best) {
            best = d;
            snprintf(buf, len, "%s", cand);
            found = buf;
        }
    }
    size_t limit = strlen(name) / 3 > 2 ? strlen(name) / 3 : 2;
    return best <= limit ? found : NULL;
}

/* ---- checking one value ---- */

static bool parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < NX_ARRAY_LEN(yes); i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

static bool enum_has(const char *choices, const char *v)
{
    size_t vl = strlen(v);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == vl && strncmp(p, v, n) == 0)
            return true;
        if (!bar)
            break;
        p = bar + 1;
    }
    return false;
}

/* Checks val against s; on failure writes what was expected into err. */
static bool check(const setting *s, const char *val, char *err, size_t errlen)
{
    switch (s->kind) {
    case K_STR:
    case K_LIST: return true;
    case K_BOOL: {
        bool b;
        if (parse_bool(val, &b))
            return true;
        snprintf(err, errlen, "expected true or false, got '%s'", val);
        return false;
    }
    case K_ENUM:
        if (enum_has(s->choices, val))
            return true;
        snprintf(err, errlen, "expected one of %s, got '%s'", s->choices, val);
        return false;
    case K_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(val, &end, 10);
        bool starts_ok = isdigit((unsigned char)val[0]) || val[0] == '-';
        if (starts_ok && !errno && end != val && !*end && v >= s->min && v <= s->max)
            return true;
        if (s->min == INT64_MIN && s->max == INT64_MAX)
            snprintf(err, errlen, "expected an integer, got '%s'", val);
        else
            snprintf(err, errlen, "expected an integer from %lld to %lld, got '%s'",
                     (long long)s->min, (long long)s->max, val);
        return false;
    }
    case K_DURATION: {
        uint64_t ms;
        if (nx_parse_duration_ms(val, &ms) == 0)
            return true;
        snprintf(err, errlen, "expected a duration such as 500ms, 30s or 2m, got '%s'", val);
        return false;
    }
    case K_SIZE: {
        uint64_t b;
        if (nx_parse_size(val, &b) == 0 && b >= (uint64_t)s->min && b <= (uint64_t)s->max)
            return true;
        snprintf(err, errlen,
                 "expected a size such as 8k, 100M or 1g (%lld to %lld bytes), got '%s'",
                 (long long)s->min, (long long)s->max, val);
        return false;
    }
    }
    return false;
}

bool nx_config_check_typed(int setting_type, const char *text, char *err, size_t errlen)
{
    static const enum kind kinds[] = {K_STR, K_INT, K_BOOL, K_DURATION, K_SIZE};
    if (setting_type < 0 || (size_t)setting_type >= NX_ARRAY_LEN(kinds)) {
        snprintf(err, errlen, "the plugin declares an unknown setting type %d", setting_type);
        return false;
    }
    setting s = {.kind = kinds[setting_type], .min = INT64_MIN, .max = INT64_MAX};
    if (s.kind == K_SIZE)
        s.min = 0;
    return check(&s, text, err, errlen);
}

static void store(nx_config *cfg, size_t i, const char *val, const char *source)
{
    free(cfg->values[i]);
    free(cfg->sources[i]);
    cfg->values[i] = nx_xstrdup(val);
    cfg->sources[i] = nx_xstrdup(source);
}

/* Checks and stores one value; prints the error (key, source, expectation) on failure. */
static int set(nx_config *cfg, size_t i, const char *val, const char *source)
{
    char err[320];
    if (!check(&schema[i], val, err, sizeof(err))) {
        fprintf(stderr, "nexus: %s: %s: %s\n", source, schema[i].key, err);
        return NX_ERR;
    }
    store(cfg, i, val, source);
    return NX_OK;
}

/* ---- the typed view ---- */

static const char *value_of(const nx_config *cfg, const char *key)
{
    int i = find_key(key);
    NX_ASSERT(i >= 0);
    return cfg->values[i];
}

static uint64_t ms_of(const nx_config *cfg, const char *key)
{
    uint64_t ms = 0;
    NX_ASSERT(nx_parse_duration_ms(value_of(cfg, key), &ms) == 0);
    return ms;
}

static uint64_t size_of(const nx_config *cfg, const char *key)
{
    uint64_t b = 0;
    NX_ASSERT(nx_parse_size(value_of(cfg, key), &b) == 0);
    return b;
}

static int64_t int_of(const nx_config *cfg, const char *key)
{
    return strtoll(value_of(cfg, key), NULL, 10);
}

static char *str_of(const nx_config *cfg, const char *key)
{
    return nx_xstrdup(value_of(cfg, key));
}

static void free_typed(nx_config *cfg)
{
    free(cfg->host);
    free(cfg->environment);
    free(cfg->access_log);
    free(cfg->log_level);
    free(cfg->plugins_dir);
    free(cfg->pid_file);
}

/* Refreshes the typed fields from the (already checked) values. */
static void fill_typed(nx_config *cfg)
{
    free_typed(cfg);
    cfg->host = str_of(cfg, "app.host");
    cfg->port = (int)int_of(cfg, "app.port");
    cfg->workers = (int)int_of(cfg, "app.workers");
    cfg->environment = str_of(cfg, "app.environment");
    parse_bool(value_of(cfg, "app.debug"), &cfg->debug);
    cfg->access_log = str_of(cfg, "logging.access_log");
    cfg->log_level = str_of(cfg, "logging.level");
    cfg->plugins_dir = str_of(cfg, "plugins.dir");
    cfg->pid_file = str_of(cfg, "server.pid_file");
    cfg->shutdown_delay_ms = ms_of(cfg, "server.shutdown_delay");
    cfg->graceful_timeout_ms = ms_of(cfg, "server.graceful_timeout");
    cfg->reload_timeout_ms = ms_of(cfg, "server.reload_timeout");
    cfg->worker_timeout_ms = ms_of(cfg, "server.worker_timeout");
    cfg->worker_connections = int_of(cfg, "server.worker_connections");
    cfg->max_requests = int_of(cfg, "server.max_requests");
    cfg->max_requests_jitter = int_of(cfg, "server.max_requests_jitter");
    nx_http_settings_default(&cfg->http);
    cfg->http.keepalive_ms = ms_of(cfg, "server.keepalive_timeout");
    cfg->http.header_ms = ms_of(cfg, "server.header_timeout");
    cfg->http.body_ms = ms_of(cfg, "server.body_timeout");
    cfg->http.handler_ms = ms_of(cfg, "server.handler_timeout");
    cfg->http.send_ms = ms_of(cfg, "server.send_timeout");
    cfg->http.max_body = size_of(cfg, "server.client_max_body_size");
    cfg->http.body_buffer = size_of(cfg, "server.client_body_buffer_size");
    cfg->http.body_temp_dir = nx_config_get(cfg, "server.client_body_temp_path", NULL);
    cfg->http.limits.max_field = (size_t)size_of(cfg, "server.large_client_header_buffer");
    cfg->http.limits.max_request_line = cfg->http.limits.max_field;
    cfg->http.limits.max_head = (size_t)size_of(cfg, "server.max_header_size");
}

void nx_config_defaults(nx_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->values = nx_xcalloc(NSCHEMA, sizeof(char *));
    cfg->sources = nx_xcalloc(NSCHEMA, sizeof(char *));
    for (size_t i = 0; i < NSCHEMA; i++)
        NX_ASSERT(set(cfg, i, schema[i].def, "default") == NX_OK);
    fill_typed(cfg);
}

const char *nx_config_get(const nx_config *cfg, const char *key, const char **source)
{
    int i = find_key(key);
    if (i < 0)
        return NULL;
    if (source)
        *source = cfg->sources[i];
    return cfg->values[i];
}

/* ---- sources ---- */

static void add_extra(nx_config *cfg, const char *key, const char *value, const char *source)
{
    cfg->extras = nx_xrealloc(cfg->extras, (cfg->nextras + 1) * sizeof(*cfg->extras));
    cfg->extras[cfg->nextras].key = nx_xstrdup(key);
    cfg->extras[cfg->nextras].value = nx_xstrdup(value);
    cfg->extras[cfg->nextras].source = nx_xstrdup(source);
    cfg->nextras++;
}

/* True when key is a section or subsection ("cache", "cache.redis") of known keys. */
static bool is_section(const char *key)
{
    size_t len = strlen(key);
    for (size_t i = 0; i < NSCHEMA; i++)
        if (strncmp(schema[i].key, key, len) == 0 && schema[i].key[len] == '.')
            return true;
    return false;
}

static int load_file(nx_config *cfg, const char *path)
{
    nx_yaml_doc doc;
    char err[512];
    if (nx_yaml_load(path, &doc, err, sizeof(err)) != 0) {
        fprintf(stderr, "nexus: %s\n", err);
        return NX_ERR;
    }
    int rc = NX_OK;
    for (size_t j = 0; j < doc.n && rc == NX_OK; j++) {
        const nx_yaml_entry *e = &doc.entries[j];
        char source[600];
        snprintf(source, sizeof(source), "%s:%d", path, e->line);
        if (strncmp(e->key, "plugins.", 8) == 0 && strchr(e->key + 8, '.')) {
            /* plugins.<name>.<key>: the plugin declares its keys; the loader checks them. */
            add_extra(cfg, e->key, e->value, source);
            continue;
        }
        int i = find_key(e->key);
        bool section = is_section(e->key);
        if (e->is_map == 2 && (section || i >= 0))
            continue; /* null: "database:" with its keys commented out keeps the defaults */
        if (e->is_map && section)
            continue; /* "cache: {}" is allowed, and changes nothing */
        if (i < 0 && !section) {
            /* "port: {value: 1}" reaches here as app.port.value: name the real problem. */
            char prefix[256];
            snprintf(prefix, sizeof(prefix), "%s", e->key);
            for (char *dot; (dot = strrchr(prefix, '.')) != NULL;) {
                *dot = '\0';
                if (find_key(prefix) >= 0) {
                    fprintf(stderr, "nexus: %s: '%s' expects a value, not a mapping\n", source,
                            prefix);
                    rc = NX_ERR;
                    break;
                }
            }
            if (rc != NX_OK)
                break;
        }
        if (section || e->is_map) {
            fprintf(stderr, "nexus: %s: '%s' %s\n", source, e->key,
                    section
                        ? "is a section: expected keys under it, not a value"
                        : (i >= 0 ? "expects a value, not a mapping" : "is not a known section"));
            rc = NX_ERR;
            break;
        }
        if (i < 0) {
            char hint[96];
            const char *near = closest(e->key, false, hint, sizeof(hint));
            fprintf(stderr, "nexus: %s: unknown key '%s'%s%s%s\n", source, e->key,
                    near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
            rc = NX_ERR;
            break;
        }
        rc = set(cfg, (size_t)i, e->value, source);
    }
    nx_yaml_free(&doc);
    return rc;
}

char *nx_config_read_secret(const char *var, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        /* A directory opens fine and reads as nothing: a secrets mount named instead of
         * the file in it must not become an empty secret. */
        snprintf(err, errlen, "%s: cannot read %s: %s", var, path,
                 f ? "not a regular file" : strerror(errno));
        if (f)
            fclose(f);
        return NULL;
    }
    char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    bool more = fgetc(f) != EOF;
    bool failed = ferror(f);
    fclose(f);
    if (failed) {
        snprintf(err, errlen, "%s: cannot read %s", var, path);
        return NULL;
    }
    if (more) {
        snprintf(err, errlen, "%s: %s is larger than %zu bytes", var, path, sizeof(buf) - 1);
        return NULL;
    }
    buf[n] = '\0';
    if (n && buf[n - 1] == '\n')
        buf[--n] = '\0';
    if (n && buf[n - 1] == '\r')
        buf[--n] = '\0';
    return nx_xstrdup(buf);
}

/*
 * The .env file: NAME=value lines, read before the environment and beneath it (a real
 * variable wins). Values may be quoted; ${VAR} expands in unquoted and double-quoted
 * ones, as in the guide's .env.production.
 */
typedef struct dotenv_var {
    char *name, *value, *source;
} dotenv_var;

static dotenv_var *dotenv;
static size_t ndotenv;

static void dotenv_clear(void)
{
    for (size_t i = 0; i < ndotenv; i++) {
        free(dotenv[i].name);
        free(dotenv[i].value);
        free(dotenv[i].source);
    }
    free(dotenv);
    dotenv = NULL;
    ndotenv = 0;
}

static const dotenv_var *dotenv_get(const char *name)
{
    for (size_t i = ndotenv; i-- > 0;) /* the last assignment wins, as in a shell */
        if (strcmp(dotenv[i].name, name) == 0)
            return &dotenv[i];
    return NULL;
}

static int dotenv_load(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "nexus: env file %s cannot be read: %s\n", path, strerror(errno));
        return NX_ERR;
    }
    char line[8192];
    int lineno = 0, rc = NX_OK;
    while (rc == NX_OK && fgets(line, sizeof(line), f)) {
        lineno++;
        char where[600];
        snprintf(where, sizeof(where), "%s:%d", path, lineno);
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
            line[--n] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p || *p == '#')
            continue;
        if (strncmp(p, "export ", 7) == 0)
            p += 7;
        char *eq = strchr(p, '=');
        char *name_end = eq;
        while (name_end && name_end > p && (name_end[-1] == ' ' || name_end[-1] == '\t'))
            name_end--;
        if (!eq || name_end == p) {
            fprintf(stderr, "nexus: %s: expected NAME=value\n", where);
            rc = NX_ERR;
            break;
        }
        *name_end = '\0';
        char *v = eq + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        bool expand_it = true;
        size_t vl = strlen(v);
        if (vl >= 2 && (v[0] == '"' || v[0] == '\'') && v[vl - 1] == v[0]) {
            expand_it = v[0] == '"';
            v[vl - 1] = '\0';
            v++;
        }
        char err[700];
        char *value = expand_it ? nx_expand_vars(v, where, err, sizeof(err)) : nx_xstrdup(v);
        if (!value) {
            fprintf(stderr, "nexus: %s\n", err);
            rc = NX_ERR;
            break;
        }
        dotenv = nx_xrealloc(dotenv, (ndotenv + 1) * sizeof(*dotenv));
        dotenv[ndotenv].name = nx_xstrdup(p);
        dotenv[ndotenv].value = value;
        dotenv[ndotenv].source = nx_xstrdup(where);
        ndotenv++;
    }
    fclose(f);
    return rc;
}

/* A variable from the environment, else from the .env file; *source describes it. */
static const char *lookup_var(const char *name, char *source, size_t len)
{
    const char *v = getenv(name);
    if (v) {
        snprintf(source, len, "environment %s", name);
        return v;
    }
    const dotenv_var *d = dotenv_get(name);
    if (!d)
        return NULL;
    snprintf(source, len, "%s (%s)", d->source, name);
    return d->value;
}

/* Applies NEXUS_<KEY> or NEXUS_<KEY>_FILE for one key name (canonical or alias). */
static int load_var(nx_config *cfg, size_t i, const char *env)
{
    char file_var[112], vsrc[700], fsrc[700];
    snprintf(file_var, sizeof(file_var), "%s_FILE", env);
    const char *v = lookup_var(env, vsrc, sizeof(vsrc));
    const char *fpath = lookup_var(file_var, fsrc, sizeof(fsrc));
    if (v && fpath) {
        fprintf(stderr, "nexus: both %s and %s are set; set one\n", env, file_var);
        return NX_ERR;
    }
    if (fpath) {
        char why[700];
        char *secret = nx_config_read_secret(file_var, fpath, why, sizeof(why));
        if (!secret) {
            fprintf(stderr, "nexus: %s\n", why);
            return NX_ERR;
        }
        char source[1500];
        snprintf(source, sizeof(source), "%s -> %s", fsrc, fpath);
        int rc = set(cfg, i, secret, source);
        free(secret);
        return rc;
    }
    return v ? set(cfg, i, v, vsrc) : NX_OK;
}

static bool is_key_var(const char *name, size_t len)
{
    char env[96];
    for (size_t i = 0; i < NSCHEMA + NX_ARRAY_LEN(aliases); i++) {
        env_name(i < NSCHEMA ? schema[i].key : aliases[i - NSCHEMA].key, env, sizeof(env));
        if (strlen(env) == len && strncmp(env, name, len) == 0)
            return true;
    }
    return false;
}

static bool known_var(const char *name, size_t len)
{
    if (len == 12 && strncmp(name, "NEXUS_CONFIG", 12) == 0)
        return true;
    /* NEXUS_X_FILE is known when NEXUS_X is; NEXUS_SERVER_PID_FILE is a key itself. */
    return is_key_var(name, len) ||
           (len > 5 && strncmp(name + len - 5, "_FILE", 5) == 0 && is_key_var(name, len - 5));
}

/* Variables of plugins' settings: their names are known only once plugins are loaded. */
static bool is_plugin_var(const char *name, size_t len)
{
    return len > 14 && strncmp(name, "NEXUS_PLUGINS_", 14) == 0 && !known_var(name, len);
}

static void warn_unknown(const char *name, size_t len, const char *where)
{
    if (strncmp(name, "NEXUS_", 6) != 0 || known_var(name, len) || is_plugin_var(name, len) ||
        nx_expand_referenced(name, len))
        return; /* a variable the file or .env expands is used, not stray */
    char var[96], hint[96];
    snprintf(var, sizeof(var), "%.*s", (int)len, name);
    const char *near = closest(var, true, hint, sizeof(hint));
    fprintf(stderr, "nexus: warning: unknown variable %s (%s) ignored%s%s%s\n", var, where,
            near ? "; did you mean " : "", near ? near : "", near ? "?" : "");
}

/* A stray variable must not stop a container, but must not go unnoticed either. */
static void warn_unknown_vars(void)
{
    for (char **e = environ; *e; e++) {
        const char *eq = strchr(*e, '=');
        warn_unknown(*e, eq ? (size_t)(eq - *e) : strlen(*e), "environment");
    }
    for (size_t i = 0; i < ndotenv; i++)
        warn_unknown(dotenv[i].name, strlen(dotenv[i].name), dotenv[i].source);
}

static int load_env(nx_config *cfg)
{
    char env[96];
    for (size_t j = 0; j < NX_ARRAY_LEN(plain_vars); j++) {
        char source[700];
        const char *v = lookup_var(plain_vars[j].key, source, sizeof(source));
        if (v && set(cfg, (size_t)find_key(plain_vars[j].target), v, source) != NX_OK)
            return NX_ERR;
    }
    /* Aliases first, so the canonical variable wins when both are set. */
    for (size_t j = 0; j < NX_ARRAY_LEN(aliases); j++) {
        env_name(aliases[j].key, env, sizeof(env));
        if (load_var(cfg, (size_t)find_key(aliases[j].target), env) != NX_OK)
            return NX_ERR;
    }
    for (size_t i = 0; i < NSCHEMA; i++) {
        env_name(schema[i].key, env, sizeof(env));
        if (load_var(cfg, i, env) != NX_OK)
            return NX_ERR;
    }
    warn_unknown_vars();
    /* Keep plugin variables, the .env file's first so that the environment's come later
     * and win. */
    for (size_t i = 0; i < ndotenv; i++)
        if (is_plugin_var(dotenv[i].name, strlen(dotenv[i].name)))
            add_extra(cfg, dotenv[i].name, dotenv[i].value, dotenv[i].source);
    for (char **e = environ; *e; e++) {
        const char *eq = strchr(*e, '=');
        size_t len = eq ? (size_t)(eq - *e) : strlen(*e);
        if (eq && is_plugin_var(*e, len)) {
            char name[128], source[160];
            snprintf(name, sizeof(name), "%.*s", (int)len, *e);
            snprintf(source, sizeof(source), "environment %s", name);
            add_extra(cfg, name, eq + 1, source);
        }
    }
    return NX_OK;
}

static int find_flag(const char *arg, size_t len)
{
    for (size_t i = 0; i < NSCHEMA; i++) {
        if (!(schema[i].flags & F_FLAG))
            continue;
        char flag[64];
        flag_name(&schema[i], flag, sizeof(flag));
        if (strlen(flag) == len && memcmp(flag, arg, len) == 0)
            return (int)i;
    }
    return -1;
}

/*
 * Walks the flags. The first walk (apply false) only looks for --config, which decides
 * the file read before everything else, and reports nothing: the second walk, which
 * applies the flags, reports errors in order.
 */
static int scan_flags(nx_config *cfg, int argc, char **argv, int first, bool apply,
                      const char **config_file, const char **env_file)
{
    for (int k = first; k < argc; k++) {
        const char *arg = argv[k];
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        const char *val = eq ? eq + 1 : (k + 1 < argc ? argv[k + 1] : NULL);
        bool is_config = len == 8 && memcmp(arg, "--config", 8) == 0;
        bool is_env_file = len == 10 && memcmp(arg, "--env-file", 10) == 0;
        int i = is_config || is_env_file ? -1 : find_flag(arg, len);
        if (i < 0 && !is_config && !is_env_file) {
            if (!apply)
                continue;
            fprintf(stderr, "nexus: unknown option '%.*s' (see nexus serve --help)\n", (int)len,
                    arg);
            return NX_ERR;
        }
        if (!val) {
            if (!apply)
                continue;
            fprintf(stderr, "nexus: option '%s' needs a value\n", arg);
            return NX_ERR;
        }
        if (!eq)
            k++;
        if (is_config || is_env_file) {
            *(is_config ? config_file : env_file) = val;
            continue;
        }
        if (apply) {
            char source[80];
            snprintf(source, sizeof(source), "flag %.*s", (int)len, arg);
            if (set(cfg, (size_t)i, val, source) != NX_OK)
                return NX_ERR;
        }
    }
    return NX_OK;
}

/* Rules that only bite in production, where a development default is a vulnerability. */
static int check_production(const nx_config *cfg)
{
    if (cfg->skip_production_rules || strcmp(cfg->environment, "production") != 0)
        return NX_OK;
    const char *prod = "";
    nx_config_get(cfg, "app.environment", &prod);
    const char *src = "";
    if (cfg->debug) {
        nx_config_get(cfg, "app.debug", &src);
        fprintf(stderr,
                "nexus: %s: app.debug is true, which production refuses "
                "(app.environment is production, from %s)\n",
                src, prod);
        return NX_ERR;
    }
    const char *secret = nx_config_get(cfg, "auth.jwt_secret", &src);
    static const char *const placeholders[] = {"changeme",        "change-me",
                                               "secret",          "password",
                                               "your-secret-key", "<base64-encoded-secret>"};
    bool placeholder = false;
    for (size_t i = 0; i < NX_ARRAY_LEN(placeholders); i++)
        if (strcasecmp(secret, placeholders[i]) == 0)
            placeholder = true;
    if (strlen(secret) < 32 || placeholder) {
        fprintf(stderr,
                "nexus: %s: auth.jwt_secret is %s; production (app.environment, from "
                "%s) needs a random secret of 32 bytes or more "
                "(NEXUS_AUTH_JWT_SECRET_FILE reads it from a file)\n",
                src,
                !*secret      ? "not set"
                : placeholder ? "a placeholder"
                              : "shorter than 32 bytes",
                prod);
        return NX_ERR;
    }
    const char *origins = nx_config_get(cfg, "security.cors_origins", &src);
    bool creds = false;
    parse_bool(nx_config_get(cfg, "security.cors_allow_credentials", NULL), &creds);
    bool any_origin = false;
    for (const char *o = origins; *o;) {
        o += strspn(o, ", \t");
        size_t len = strcspn(o, ",");
        while (len && (o[len - 1] == ' ' || o[len - 1] == '\t'))
            len--;
        any_origin |= len == 1 && o[0] == '*';
        o += strcspn(o, ",");
    }
    if (creds && any_origin) {
        fprintf(stderr,
                "nexus: %s: security.cors_origins allows any origin together with "
                "credentials, which production refuses (app.environment, from %s)\n",
                src, prod);
        return NX_ERR;
    }
    return NX_OK;
}

int nx_config_load(nx_config *cfg, int argc, char **argv, int first)
{
    cfg->argc = argc;
    cfg->argv = argv;
    cfg->first = first;
    nx_expand_forget();
    const char *file = NULL, *env_file = NULL;
    if (scan_flags(cfg, argc, argv, first, false, &file, &env_file) != NX_OK)
        return NX_ERR;
    if (!file)
        file = getenv("NEXUS_CONFIG");
    if (!file && access("config/config.yaml", F_OK) == 0)
        file = "config/config.yaml";
    if (file) {
        if (load_file(cfg, file) != NX_OK)
            return NX_ERR;
        free(cfg->config_file);
        cfg->config_file = nx_xstrdup(file);
    }
    dotenv_clear();
    if (!env_file && access(".env", F_OK) == 0)
        env_file = ".env";
    int rc = env_file ? dotenv_load(env_file) : NX_OK;
    if (rc == NX_OK)
        rc = load_env(cfg);
    dotenv_clear();
    if (rc != NX_OK)
        return NX_ERR;
    if (scan_flags(cfg, argc, argv, first, true, &file, &env_file) != NX_OK)
        return NX_ERR;
    fill_typed(cfg);
    if (cfg->workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->workers = n > 0 ? (int)n : 1;
    }
    if (cfg->http.limits.max_head < cfg->http.limits.max_field) {
        const char *src = "";
        nx_config_get(cfg, "server.max_header_size", &src);
        fprintf(stderr,
                "nexus: %s: server.max_header_size must be at least "
                "server.large_client_header_buffer\n",
                src);
        return NX_ERR;
    }
    char why[512];
    if (!cfg->db)
        cfg->db = nx_xcalloc(1, sizeof(*cfg->db));
    else
        nx_db_settings_free(cfg->db);
    if (nx_db_settings_load(cfg->db, cfg, why, sizeof(why)) != NX_OK) {
        fprintf(stderr, "nexus: %s\n", why);
        return NX_ERR;
    }
    if (!cfg->cache)
        cfg->cache = nx_xcalloc(1, sizeof(*cfg->cache));
    else
        nx_cache_settings_free(cfg->cache);
    nx_cache_settings_load(cfg->cache, cfg);
    return check_production(cfg);
}

void nx_config_usage(FILE *out)
{
    fprintf(out, "options (flag, environment variable, default):\n");
    fprintf(out, "  %-32s %-40s %s\n", "--config FILE", "NEXUS_CONFIG", "config/config.yaml");
    fprintf(out, "  %-32s %-40s %s\n", "--env-file FILE", "", ".env");
    for (size_t i = 0; i < NSCHEMA; i++) {
        if (!(schema[i].flags & F_FLAG))
            continue;
        char flag[64], env[96];
        flag_name(&schema[i], flag, sizeof(flag));
        env_name(schema[i].key, env, sizeof(env));
        fprintf(out, "  %-32s %-40s %s\n      %s\n", flag, env,
                *schema[i].def ? schema[i].def : "-", schema[i].help);
    }
    fprintf(out, "\nEvery other key is set in the YAML file or its variable; "
                 "`nexus config show` lists them all.\n");
}

/* Writes v as a double-quoted YAML scalar. */
static void put_quoted(FILE *out, const char *v)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(out, "\\x%02x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

void nx_config_default_plugins_dir(nx_config *cfg, const char *dir)
{
    if (*cfg->plugins_dir)
        return;
    free(cfg->plugins_dir);
    cfg->plugins_dir = nx_xstrdup(dir);
    store(cfg, (size_t)find_key("plugins.dir"), dir, "default (this installation's plugins)");
}

void nx_config_show(const nx_config *cfg, FILE *out)
{
    const char *prev = "";
    for (size_t i = 0; i < NSCHEMA; i++) {
        const char *key = schema[i].key;
        /* Open the mappings this key does not share with the previous one. */
        size_t common = 0; /* bytes of whole leading parts shared with prev */
        for (size_t k = 0; key[k] && key[k] == prev[k]; k++)
            if (key[k] == '.')
                common = k + 1;
        int depth = 0;
        for (size_t k = 0; k < common; k++)
            depth += key[k] == '.';
        const char *part = key + common;
        for (const char *dot; (dot = strchr(part, '.')) != NULL; part = dot + 1, depth++) {
            if (depth == 0 && i > 0)
                fputc('\n', out);
            fprintf(out, "%*s%.*s:\n", depth * 2, "", (int)(dot - part), part);
        }
        nx_config_show_value(out, depth, part, cfg->values[i], schema[i].flags & F_SECRET,
                             cfg->sources[i]);
        prev = key;
    }
}

void nx_config_show_value(FILE *out, int depth, const char *name, const char *value, bool secret,
                          const char *source)
{
    fprintf(out, "%*s%s: ", depth * 2, "", name);
    put_quoted(out, secret && *value ? "(redacted)" : value);
    fprintf(out, "  # %s\n", source);
}

void nx_config_free(nx_config *cfg)
{
    free_typed(cfg);
    if (cfg->db) {
        nx_db_settings_free(cfg->db);
        free(cfg->db);
        cfg->db = NULL;
    }
    if (cfg->cache) {
        nx_cache_settings_free(cfg->cache);
        free(cfg->cache);
        cfg->cache = NULL;
    }
    for (size_t i = 0; cfg->values && i < NSCHEMA; i++) {
        free(cfg->values[i]);
        free(cfg->sources[i]);
    }
    free(cfg->values);
    free(cfg->sources);
    free(cfg->config_file);
    for (size_t i = 0; i < cfg->nextras; i++) {
        free(cfg->extras[i].key);
        free(cfg->extras[i].value);
        free(cfg->extras[i].source);
    }
    free(cfg->extras);
    memset(cfg, 0, sizeof(*cfg));
}

/* ---- the schema as documents ---- */

static const char *kind_name(enum kind k)
{
    static const char *const names[] = {"string", "integer", "boolean", "duration",
                                        "size",   "enum",    "list"};
    return names[k];
}

void nx_config_schema_json(FILE *out)
{
    json_t *root = json_object();
    json_object_set_new(root, "$schema",
                        json_string("https://json-schema.org/draft/2020-12/schema"));
    json_object_set_new(root, "title", json_string("Nexus configuration file"));
    json_object_set_new(root, "type", json_string("object"));
    json_object_set_new(root, "additionalProperties", json_false());
    json_t *props = json_object();
    json_object_set_new(root, "properties", props);
    for (size_t i = 0; i < NSCHEMA + NX_ARRAY_LEN(aliases); i++) {
        bool alias = i >= NSCHEMA;
        const setting *st = alias ? &schema[find_key(aliases[i - NSCHEMA].target)] : &schema[i];
        const char *key = alias ? aliases[i - NSCHEMA].key : st->key;
        /* Walk or create the nested objects down to the key's last part. */
        json_t *level = props;
        char part[64];
        const char *p = key;
        for (const char *dot; (dot = strchr(p, '.')) != NULL; p = dot + 1) {
            snprintf(part, sizeof(part), "%.*s", (int)(dot - p), p);
            json_t *obj = json_object_get(level, part);
            if (!obj) {
                obj = json_object();
                json_object_set_new(obj, "type", json_string("object"));
                json_object_set_new(obj, "additionalProperties", json_false());
                json_object_set_new(obj, "properties", json_object());
                json_object_set_new(level, part, obj);
            }
            level = json_object_get(obj, "properties");
        }
        json_t *d = json_object();
        char desc[400];
        char env[96];
        env_name(key, env, sizeof(env));
        snprintf(desc, sizeof(desc), "%s%s%s. Variable: %s", st->help, alias ? "; same as " : "",
                 alias ? st->key : "", env);
        json_object_set_new(d, "description", json_string(desc));
        switch (st->kind) {
        case K_STR: json_object_set_new(d, "type", json_string("string")); break;
        case K_LIST:
            json_object_set_new(d, "type", json_pack("[s, s]", "string", "array"));
            json_object_set_new(d, "items", json_pack("{s:s}", "type", "string"));
            break;
        case K_BOOL: json_object_set_new(d, "type", json_string("boolean")); break;
        case K_INT:
            json_object_set_new(d, "type", json_string("integer"));
            json_object_set_new(d, "minimum", json_integer(st->min));
            json_object_set_new(d, "maximum", json_integer(st->max));
            break;
        case K_DURATION:
            json_object_set_new(d, "type", json_pack("[s, s]", "string", "number"));
            json_object_set_new(d, "pattern", json_string("^[0-9]+(\\.[0-9]+)?(ms|s|m|h)?$"));
            break;
        case K_SIZE:
            json_object_set_new(d, "type", json_pack("[s, s]", "string", "integer"));
            json_object_set_new(d, "pattern", json_string("^[0-9]+([kKmMgG][bB]?)?$"));
            break;
        case K_ENUM: {
            json_t *e = json_array();
            char buf[128];
            snprintf(buf, sizeof(buf), "%s", st->choices);
            char *save = NULL;
            for (char *c = strtok_r(buf, "|", &save); c; c = strtok_r(NULL, "|", &save))
                json_array_append_new(e, json_string(c));
            json_object_set_new(d, "enum", e);
            break;
        }
        }
        if (!alias)
            json_object_set_new(d, "default", json_string(st->def));
        json_object_set_new(level, p, d);
    }
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fprintf(out, "%s\n", text);
    free(text);
    json_decref(root);
}

void nx_config_docs(FILE *out)
{
    fprintf(out, "# Configuration reference\n\n"
                 "Generated from the schema by `nexus config docs`; `make docs` rewrites this "
                 "file and a test\nfails when it is out of date.\n\n"
                 "Sources, lowest to highest precedence: built-in default < YAML file "
                 "(`--config`, else\n`NEXUS_CONFIG`, else `config/config.yaml`) < `.env` file "
                 "(`--env-file`, else `./.env`) <\nenvironment < flags. Any variable may instead "
                 "be given as `<NAME>_FILE=/path`, whose content\nis the value (Docker and "
                 "Kubernetes secrets). `${VAR}` and `${VAR:-default}` expand inside\nYAML values "
                 "and `.env` values. `nexus config show` prints the effective configuration "
                 "with\nthe source of every value; `nexus config schema` prints a JSON Schema "
                 "for editors and CI.\n`nexus config check` and `show` load the plugins as "
                 "the server would, so the plugins'\nsettings (`plugins.<name>.<key>`, "
                 "`NEXUS_PLUGINS_<NAME>_<KEY>`, each plugin declares its own:\nsee "
                 "[plugins.md](plugins.md#settings)) are checked and shown with the rest.\n\n"
                 "The YAML file is plain YAML without anchors or aliases; a key given twice in "
                 "one mapping\nis an error (naming both lines), not a silent override.\n\n"
                 "Types: *duration* is `500ms`, `30s`, `5m`, `1h` or a number of seconds; "
                 "*size* is bytes with\nan optional `k`, `M` or `g`; *list* is a YAML list or "
                 "a comma-separated string.\n");
    const char *section = "";
    size_t section_len = 0;
    for (size_t i = 0; i < NSCHEMA; i++) {
        const setting *st = &schema[i];
        size_t sl = (size_t)(strchr(st->key, '.') - st->key);
        if (sl != section_len || strncmp(st->key, section, sl) != 0) {
            section = st->key;
            section_len = sl;
            fprintf(out,
                    "\n## %.*s\n\n| key | type | default | variable | flag | meaning |\n"
                    "| --- | --- | --- | --- | --- | --- |\n",
                    (int)sl, st->key);
        }
        char env[96], flag[64] = "";
        env_name(st->key, env, sizeof(env));
        if (st->flags & F_FLAG)
            flag_name(st, flag, sizeof(flag));
        char type[160];
        if (st->kind == K_ENUM) {
            /* "a|b" would split the Markdown table: list the choices instead. */
            size_t n = (size_t)snprintf(type, sizeof(type), "one of `");
            for (const char *c = st->choices; *c && n + 4 < sizeof(type); c++) {
                if (*c == '|') {
                    memcpy(type + n, "`, `", 4);
                    n += 4;
                } else {
                    type[n++] = *c;
                }
            }
            snprintf(type + n, sizeof(type) - n, "`");
        } else if (st->kind == K_INT)
            snprintf(type, sizeof(type), "integer %lld..%lld", (long long)st->min,
                     (long long)st->max);
        else
            snprintf(type, sizeof(type), "%s", kind_name(st->kind));
        fprintf(out, "| `%s` | %s%s | %s%s%s | `%s` | %s%s%s | %s |\n", st->key, type,
                st->flags & F_SECRET ? ", secret" : "", *st->def ? "`" : "",
                *st->def ? st->def : "(empty)", *st->def ? "`" : "", env, *flag ? "`" : "", flag,
                *flag ? "`" : "", st->help);
    }
    fprintf(out, "\n## Other names\n\nThe guide writes some keys two ways; both work.\n\n"
                 "| name | same as |\n| --- | --- |\n");
    for (size_t i = 0; i < NX_ARRAY_LEN(aliases); i++) {
        char env[96];
        env_name(aliases[i].key, env, sizeof(env));
        fprintf(out, "| `%s`, `%s` | `%s` |\n", aliases[i].key, env, aliases[i].target);
    }
    for (size_t i = 0; i < NX_ARRAY_LEN(plain_vars); i++)
        fprintf(out, "| `%s` | `%s` |\n", plain_vars[i].key, plain_vars[i].target);
    fprintf(out, "\n## Production rules\n\nWith `app.environment: production` the server "
                 "refuses to start when `app.debug` is true,\nwhen `auth.jwt_secret` is missing, "
                 "shorter than 32 bytes or a known placeholder (`changeme`),\nor when "
                 "`security.cors_origins` allows `*` together with "
                 "`security.cors_allow_credentials`.\n");
}
