/*
 * config/config.h - the server's settings: one schema, four sources.
 *
 * Every key has one entry in the schema (config.c): its type, default, range and help.
 * Its environment variable derives from the key by rule (cache.redis.host ->
 * NEXUS_CACHE_REDIS_HOST) and, for the app, server and logging sections, its flag from
 * the key's last part (--port). Precedence, lowest to highest: default < YAML file
 * (--config, else NEXUS_CONFIG, else config/config.yaml when present) < environment
 * (NEXUS_X, or NEXUS_X_FILE naming a file that holds the value) < flags. Every value is
 * checked against the schema where it is read, and an error names the key, its source
 * (file:line, variable or flag) and what was expected.
 *
 * Keys of features that come later (database, cache, auth...) are declared already, so
 * that the guide's files are accepted today; the server reads them as it grows.
 */
#ifndef NX_CONFIG_CONFIG_H
#define NX_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "http/http1.h"

#define NX_EX_CONFIG 78 /* sysexits.h EX_CONFIG: the exit status of a bad configuration */

/* A value for a plugin's setting, kept for the plugin loader to check and claim. */
typedef struct nx_config_extra {
    char *key; /* "plugins.todo.page_size", or the variable's name "NEXUS_PLUGINS_..." */
    char *value;
    char *source; /* file:line or "environment NAME" */
} nx_config_extra;

typedef struct nx_config {
    /* typed copies of the settings the server uses */
    char *host;
    int port;
    int workers;
    char *environment;
    bool debug;
    char *access_log; /* "off", "stdout", or a path */
    char *log_level;
    char *plugins_dir; /* colon-separated folders; "" = beside the binary */
    char *pid_file;
    uint64_t shutdown_delay_ms;
    uint64_t graceful_timeout_ms;
    uint64_t reload_timeout_ms;
    uint64_t worker_timeout_ms;
    int64_t worker_connections;
    int64_t max_requests;
    int64_t max_requests_jitter;
    nx_http_settings http;
    struct nx_db_settings *db;       /* database.* and database.url resolved (db/settings.c) */
    struct nx_cache_settings *cache; /* cache.* (cache/cache.c) */

    /* every schema key's effective value and where it came from, by schema index */
    char **values;
    char **sources;
    char *config_file; /* the file read, or NULL */
    nx_config_extra *extras;
    size_t nextras;

    /* Set before nx_config_load to skip the production rules: a probe such as `nexus health`
     * needs the address, not the secrets, and must not fail where they are not mounted. */
    bool skip_production_rules;

    /* the command line it was loaded from, to load it again on reload (borrowed) */
    int argc;
    char **argv;
    int first;
} nx_config;

/* Fills cfg with the built-in defaults. */
void nx_config_defaults(nx_config *cfg);

/*
 * Reads the YAML file, the environment and the flags argv[first..argc), in that order of
 * precedence. On error prints one message naming key, source and expectation to stderr
 * and returns NX_ERR. Unknown NEXUS_* variables are warned about, not refused.
 */
int nx_config_load(nx_config *cfg, int argc, char **argv, int first);

/* The effective value of key ("cache.redis.host") and its source; NULL if no such key. */
const char *nx_config_get(const nx_config *cfg, const char *key, const char **source);

/* Prints the flags with their variables and defaults (for --help). */
void nx_config_usage(FILE *out);

/* An empty plugins.dir becomes dir (the installation's folder), shown as its default. */
void nx_config_default_plugins_dir(nx_config *cfg, const char *dir);

/* Prints the effective configuration as YAML with each value's source; secrets redacted. */
void nx_config_show(const nx_config *cfg, FILE *out);

/* One "name: value  # source" line of that listing at depth (two spaces each); a secret
 * that is set prints as (redacted). For the plugins' settings, listed after the core keys. */
void nx_config_show_value(FILE *out, int depth, const char *name, const char *value, bool secret,
                          const char *source);

/*
 * Checks text against a type given as a plugin declares it (NX_SETTING_*); on failure
 * writes what was expected into err and returns false.
 */
bool nx_config_check_typed(int setting_type, const char *text, char *err, size_t errlen);

/*
 * Reads a secret file named by var (a NEXUS_..._FILE variable): its content without one
 * trailing newline, for the caller to free. NULL with err when it is not a readable regular
 * file or is over 8 KiB.
 */
char *nx_config_read_secret(const char *var, const char *path, char *err, size_t errlen);

/* Prints the schema as a JSON Schema for the YAML file (editors, CI). */
void nx_config_schema_json(FILE *out);

/* Prints the reference documentation (docs/configuration.md) generated from the schema. */
void nx_config_docs(FILE *out);

void nx_config_free(nx_config *cfg);

#endif
