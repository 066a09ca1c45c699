/*
 * config/config.h - the server's settings: defaults, NEXUS_* variables, flags.
 *
 * Each setting has one entry in the table in config.c naming its key (app.port), type
 * and default; its environment variable is derived from the key by rule (app.port ->
 * NEXUS_APP_PORT) and its flag from the key's last part (--port). Precedence, lowest to
 * highest: default < environment < flag.
 */
#ifndef NX_CONFIG_CONFIG_H
#define NX_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "http/http1.h"

typedef struct nx_config {
    char *host;
    int port;
    int workers;
    char *config_file;
    char *access_log;       /* "off", "stdout", or a path */
    char *plugins_dir;      /* colon-separated folders */
    char *environment;
    char *log_level;
    char *pid_file;
    uint64_t shutdown_delay_ms;
    uint64_t graceful_timeout_ms;
    int64_t worker_connections;
    int64_t max_requests;
    int64_t max_requests_jitter;
    nx_http_settings http;
} nx_config;

/* Fills cfg with the built-in defaults. */
void nx_config_defaults(nx_config *cfg);

/*
 * Applies NEXUS_* variables, then the flags in argv[first..argc). On error prints a
 * message naming the flag or variable and what was expected, and returns NX_ERR.
 */
int nx_config_load(nx_config *cfg, int argc, char **argv, int first);

/* Prints the flags with their variables and defaults (for --help). */
void nx_config_usage(FILE *out);

void nx_config_free(nx_config *cfg);

#endif
