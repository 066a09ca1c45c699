/*
 * config_test.c - settings: built-in defaults, NEXUS_* variables, flags in both forms, the
 * precedence default < environment < flag, and the operator-facing errors (each names the
 * flag or variable, the key, and the expected form).
 *
 * Every test starts with no NEXUS_* variable set (Criterion runs each test in its own
 * process, so setenv here never leaks into another test).
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "config_env.h"
#include "core/util.h"

/* The config files the tests name: empty YAML documents, valid and without effect. */
static void make_empty_files(void)
{
    static const char *const paths[] = {"/tmp/nexus-ut-etc.yaml", "/tmp/nexus-ut-env.yaml",
                                        "/tmp/nexus-ut-flag.yaml", "/tmp/nexus-ut-c.yaml"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        FILE *f = fopen(paths[i], "w");
        cr_assert(f != NULL);
        fputs("# empty\n", f);
        fclose(f);
    }
}

/* Tests run where no config/config.yaml is, or it would be read as the default file. */
static void leave_repo(void)
{
    cr_assert(chdir("/tmp") == 0);
}

static void setup(void)
{
    make_empty_files();
    clear_nexus_env();
    leave_repo();
}

static void setup_capture(void)
{
    clear_nexus_env();
    leave_repo();
    cr_redirect_stderr();
}

/* Everything written to stderr so far (the test must use setup_capture). */
static const char *captured(void)
{
    static char buf[4096];
    fflush(stderr);
    FILE *f = cr_get_redirected_stderr();
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    return buf;
}

/* Loads from argv (a NULL-terminated list after the program and command names). */
static int load(nx_config *cfg, const char *const *args)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"nexus";
    argv[argc++] = (char *)"serve";
    for (size_t i = 0; args && args[i]; i++) {
        cr_assert_lt(argc, 31);
        argv[argc++] = (char *)args[i];
    }
    argv[argc] = NULL;
    nx_config_defaults(cfg);
    return nx_config_load(cfg, argc, argv, 2);
}

static long nproc(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? n : 1;
}

/* ---- defaults ------------------------------------------------------------------------- */

Test(config, defaults, .init = setup)
{
    nx_config cfg;
    memset(&cfg, 0xA5, sizeof(cfg));
    nx_config_defaults(&cfg);
    cr_expect_str_eq(cfg.host, "127.0.0.1");
    cr_expect_eq(cfg.port, 8000);
    cr_expect_eq(cfg.workers, 0);
    cr_expect_null(cfg.config_file);
    cr_expect_str_eq(cfg.access_log, "stdout");
    cr_expect_str_eq(cfg.plugins_dir, "");
    cr_expect_str_eq(cfg.environment, "development");
    cr_expect_str_eq(cfg.log_level, "info");
    cr_expect_str_eq(cfg.pid_file, "");
    cr_expect_eq(cfg.shutdown_delay_ms, 0);
    cr_expect_eq(cfg.graceful_timeout_ms, 30000);
    cr_expect_eq(cfg.worker_connections, 1000);
    cr_expect_eq(cfg.max_requests, 0);
    cr_expect_eq(cfg.max_requests_jitter, 0);
    cr_expect_eq(cfg.http.keepalive_ms, 5000);
    cr_expect_eq(cfg.http.header_ms, 10000);
    cr_expect_eq(cfg.http.body_ms, 10000);
    cr_expect_eq(cfg.http.handler_ms, 30000);
    cr_expect_eq(cfg.http.send_ms, 60000);
    cr_expect_eq(cfg.http.max_body, 100ull * 1024 * 1024);
    cr_expect_eq(cfg.http.limits.max_field, 8192);
    cr_expect_eq(cfg.http.limits.max_head, 32768);
    cr_expect_eq(cfg.http.limits.max_request_line, 8192);
    cr_expect_gt(cfg.http.limits.max_headers, 0);
    nx_config_free(&cfg);
}

/* Loading with nothing set keeps the defaults, and resolves workers = 0 to the CPU count. */
Test(config, load_without_input, .init = setup)
{
    nx_config cfg;
    cr_assert_eq(load(&cfg, NULL), NX_OK);
    cr_expect_eq(cfg.port, 8000);
    cr_expect_str_eq(cfg.host, "127.0.0.1");
    cr_expect_eq(cfg.workers, nproc());
    cr_expect_null(cfg.config_file);
    cr_expect_eq(cfg.http.limits.max_request_line, cfg.http.limits.max_field);
    nx_config_free(&cfg);
    cr_expect_null(cfg.host, "nx_config_free leaves the struct cleared");
}

/* ---- environment ---------------------------------------------------------------------- */

Test(config, env_port, .init = setup)
{
    setenv("NEXUS_APP_PORT", "9001", 1);
    nx_config cfg;
    cr_assert_eq(load(&cfg, NULL), NX_OK);
    cr_expect_eq(cfg.port, 9001);
    nx_config_free(&cfg);
}

/* Variable names follow the keys by rule: section.name -> NEXUS_SECTION_NAME. */
Test(config, env_every_kind, .init = setup)
{
    setenv("NEXUS_APP_HOST", "0.0.0.0", 1);
    setenv("NEXUS_APP_WORKERS", "3", 1);
    setenv("NEXUS_APP_ENVIRONMENT", "production", 1);
    setenv("NEXUS_LOGGING_ACCESS_LOG", "off", 1);
    setenv("NEXUS_LOGGING_LEVEL", "debug", 1);
    setenv("NEXUS_PLUGINS_DIR", "/a:/b", 1);
    setenv("NEXUS_SERVER_PID_FILE", "/run/nexus.pid", 1);
    setenv("NEXUS_SERVER_SHUTDOWN_DELAY", "250ms", 1);
    setenv("NEXUS_SERVER_GRACEFUL_TIMEOUT", "2m", 1);
    setenv("NEXUS_SERVER_KEEPALIVE_TIMEOUT", "1.5", 1);
    setenv("NEXUS_SERVER_HEADER_TIMEOUT", "1s", 1);
    setenv("NEXUS_SERVER_BODY_TIMEOUT", "2s", 1);
    setenv("NEXUS_SERVER_HANDLER_TIMEOUT", "1h", 1);
    setenv("NEXUS_SERVER_SEND_TIMEOUT", "3s", 1);
    setenv("NEXUS_SERVER_WORKER_CONNECTIONS", "5000", 1);
    setenv("NEXUS_SERVER_MAX_REQUESTS", "9223372036854775807", 1);
    setenv("NEXUS_SERVER_MAX_REQUESTS_JITTER", "50", 1);
    setenv("NEXUS_SERVER_CLIENT_MAX_BODY_SIZE", "1g", 1);
    setenv("NEXUS_SERVER_LARGE_CLIENT_HEADER_BUFFER", "16k", 1);
    setenv("NEXUS_SERVER_MAX_HEADER_SIZE", "64K", 1);
    setenv("NEXUS_CONFIG", "/tmp/nexus-ut-etc.yaml", 1);
    /* production: the safety rules want a real secret */
    setenv("NEXUS_AUTH_JWT_SECRET", "0123456789abcdef0123456789abcdef", 1);
    nx_config cfg;
    cr_assert_eq(load(&cfg, NULL), NX_OK);
    cr_expect_str_eq(cfg.host, "0.0.0.0");
    cr_expect_eq(cfg.workers, 3);
    cr_expect_str_eq(cfg.environment, "production");
    cr_expect_str_eq(cfg.access_log, "off");
    cr_expect_str_eq(cfg.log_level, "debug");
    cr_expect_str_eq(cfg.plugins_dir, "/a:/b");
    cr_expect_str_eq(cfg.pid_file, "/run/nexus.pid");
    cr_expect_eq(cfg.shutdown_delay_ms, 250);
    cr_expect_eq(cfg.graceful_timeout_ms, 120000);
    cr_expect_eq(cfg.http.keepalive_ms, 1500);
    cr_expect_eq(cfg.http.header_ms, 1000);
    cr_expect_eq(cfg.http.body_ms, 2000);
    cr_expect_eq(cfg.http.handler_ms, 3600000);
    cr_expect_eq(cfg.http.send_ms, 3000);
    cr_expect_eq(cfg.worker_connections, 5000);
    cr_expect_eq(cfg.max_requests, INT64_MAX);
    cr_expect_eq(cfg.max_requests_jitter, 50);
    cr_expect_eq(cfg.http.max_body, 1024ull * 1024 * 1024);
    cr_expect_eq(cfg.http.limits.max_field, 16384);
    cr_expect_eq(cfg.http.limits.max_head, 65536);
    cr_expect_eq(cfg.http.limits.max_request_line, 16384);
    cr_expect_str_eq(cfg.config_file, "/tmp/nexus-ut-etc.yaml");
    nx_config_free(&cfg);
}

/* ---- flags ---------------------------------------------------------------------------- */

Test(config, flag_wins_over_env, .init = setup)
{
    setenv("NEXUS_APP_PORT", "9001", 1);
    setenv("NEXUS_APP_HOST", "10.0.0.1", 1);
    setenv("NEXUS_CONFIG", "/tmp/nexus-ut-env.yaml", 1);
    nx_config cfg;
    const char *args[] = {"--port", "9002", "--config=/tmp/nexus-ut-flag.yaml", NULL};
    cr_assert_eq(load(&cfg, args), NX_OK);
    cr_expect_eq(cfg.port, 9002);
    cr_expect_str_eq(cfg.host, "10.0.0.1", "the variable of a setting without a flag applies");
    cr_expect_str_eq(cfg.config_file, "/tmp/nexus-ut-flag.yaml");
    nx_config_free(&cfg);
}

/* "--flag=value" and "--flag value" are the same; flag names derive from the keys. */
Test(config, flag_forms, .init = setup)
{
    const char *args[] = {
        "--host=::1",
        "--port",
        "8443",
        "--workers=2",
        "--environment",
        "production",
        "--access-log=/var/log/a.log",
        "--log-level",
        "warn",
        "--plugins-dir=/p1:/p2",
        "--pid-file",
        "/tmp/x.pid",
        "--shutdown-delay=5s",
        "--graceful-timeout",
        "1m",
        "--keepalive-timeout=750ms",
        "--worker-connections",
        "10",
        "--max-requests=1000",
        "--max-requests-jitter",
        "100",
        "--client-max-body-size=8k",
        "--large-client-header-buffer",
        "1k",
        "--max-header-size=2k",
        "--config",
        "/tmp/nexus-ut-c.yaml",
        NULL,
    };
    setenv("NEXUS_AUTH_JWT_SECRET", "0123456789abcdef0123456789abcdef", 1);
    nx_config cfg;
    cr_assert_eq(load(&cfg, args), NX_OK);
    cr_expect_str_eq(cfg.host, "::1");
    cr_expect_eq(cfg.port, 8443);
    cr_expect_eq(cfg.workers, 2);
    cr_expect_str_eq(cfg.environment, "production");
    cr_expect_str_eq(cfg.access_log, "/var/log/a.log");
    cr_expect_str_eq(cfg.log_level, "warn");
    cr_expect_str_eq(cfg.plugins_dir, "/p1:/p2");
    cr_expect_str_eq(cfg.pid_file, "/tmp/x.pid");
    cr_expect_eq(cfg.shutdown_delay_ms, 5000);
    cr_expect_eq(cfg.graceful_timeout_ms, 60000);
    cr_expect_eq(cfg.http.keepalive_ms, 750);
    cr_expect_eq(cfg.worker_connections, 10);
    cr_expect_eq(cfg.max_requests, 1000);
    cr_expect_eq(cfg.max_requests_jitter, 100);
    cr_expect_eq(cfg.http.max_body, 8192);
    cr_expect_eq(cfg.http.limits.max_field, 1024);
    cr_expect_eq(cfg.http.limits.max_head, 2048);
    cr_expect_eq(cfg.http.limits.max_request_line, 1024);
    cr_expect_str_eq(cfg.config_file, "/tmp/nexus-ut-c.yaml");
    nx_config_free(&cfg);
}

/* A value may contain '='; an empty string is a value; the last occurrence wins. */
Test(config, flag_values, .init = setup)
{
    const char *args[] = {
        "--plugins-dir=/a=b", "--pid-file=", "--port=1", "--port", "65535", "--host", "first",
        "--host=second",      NULL};
    nx_config cfg;
    cr_assert_eq(load(&cfg, args), NX_OK);
    cr_expect_str_eq(cfg.plugins_dir, "/a=b");
    cr_expect_str_eq(cfg.pid_file, "");
    cr_expect_eq(cfg.port, 65535);
    cr_expect_str_eq(cfg.host, "second");
    nx_config_free(&cfg);
}

/* Arguments before `first` (the program and the command) are not options. */
Test(config, first_skips_leading_arguments, .init = setup)
{
    char *argv[] = {(char *)"nexus", (char *)"serve", (char *)"--port=7000", NULL};
    nx_config cfg;
    nx_config_defaults(&cfg);
    cr_assert_eq(nx_config_load(&cfg, 3, argv, 2), NX_OK);
    cr_expect_eq(cfg.port, 7000);
    nx_config_free(&cfg);
    nx_config_defaults(&cfg);
    cr_assert_eq(nx_config_load(&cfg, 3, argv, 3), NX_OK, "argv[2] must be skipped");
    cr_expect_eq(cfg.port, 8000);
    nx_config_free(&cfg);
}

/* ---- errors --------------------------------------------------------------------------- */

/* Expects NX_ERR and every NULL-terminated needle in the captured stderr. */
static void expect_error(const char *const *args, const char *const *needles)
{
    nx_config cfg;
    int rc = load(&cfg, args);
    nx_config_free(&cfg);
    const char *out = captured();
    cr_expect_eq(rc, NX_ERR, "accepted; stderr: '%s'", out);
    for (size_t i = 0; needles[i]; i++)
        cr_expect(strstr(out, needles[i]) != NULL, "stderr '%s' lacks '%s'", out, needles[i]);
    cr_expect(strchr(out, '\n') != NULL, "the message is not a line: '%s'", out);
}

Test(config, invalid_port_flag, .init = setup_capture)
{
    const char *args[] = {"--port", "0", NULL};
    const char *needles[] = {"--port", "app.port", "expected an integer from 1 to 65535", "'0'",
                             NULL};
    expect_error(args, needles);
}

Test(config, invalid_port_flag_eq, .init = setup_capture)
{
    const char *args[] = {"--port=http", NULL};
    const char *needles[] = {"--port", "app.port", "expected an integer from 1 to 65535", "'http'",
                             NULL};
    expect_error(args, needles);
}

Test(config, invalid_port_too_big, .init = setup_capture)
{
    const char *args[] = {"--port=65536", NULL};
    const char *needles[] = {"--port", "'65536'", NULL};
    expect_error(args, needles);
}

Test(config, invalid_port_trailing, .init = setup_capture)
{
    const char *args[] = {"--port", "80x", NULL};
    const char *needles[] = {"--port", "'80x'", NULL};
    expect_error(args, needles);
}

Test(config, invalid_workers, .init = setup_capture)
{
    const char *args[] = {"--workers", "2000", NULL};
    const char *needles[] = {"--workers", "app.workers", "from 0 to 1024", "'2000'", NULL};
    expect_error(args, needles);
}

Test(config, invalid_max_requests_overflow, .init = setup_capture)
{
    const char *args[] = {"--max-requests=9223372036854775808", NULL};
    const char *needles[] = {"--max-requests", "server.max_requests",
                             "from 0 to 9223372036854775807", NULL};
    expect_error(args, needles);
}

Test(config, invalid_duration_flag, .init = setup_capture)
{
    const char *args[] = {"--graceful-timeout", "2x", NULL};
    const char *needles[] = {"--graceful-timeout", "server.graceful_timeout",
                             "expected a duration such as 500ms, 30s or 2m", "'2x'", NULL};
    expect_error(args, needles);
}

Test(config, invalid_size_flag, .init = setup_capture)
{
    const char *args[] = {"--client-max-body-size=10q", NULL};
    const char *needles[] = {"--client-max-body-size", "server.client_max_body_size",
                             "expected a size such as 8k, 100M or 1g", "'10q'", NULL};
    expect_error(args, needles);
}

Test(config, size_below_minimum, .init = setup_capture)
{
    const char *args[] = {"--large-client-header-buffer", "100", NULL};
    const char *needles[] = {"--large-client-header-buffer", "256 to 1048576 bytes", "'100'", NULL};
    expect_error(args, needles);
}

Test(config, size_above_maximum, .init = setup_capture)
{
    const char *args[] = {"--max-header-size=17m", NULL};
    const char *needles[] = {"--max-header-size", "1024 to 16777216 bytes", "'17m'", NULL};
    expect_error(args, needles);
}

Test(config, invalid_env_port, .init = setup_capture)
{
    setenv("NEXUS_APP_PORT", "70000", 1);
    const char *needles[] = {"NEXUS_APP_PORT", "environment",
                             "app.port",       "expected an integer from 1 to 65535",
                             "'70000'",        NULL};
    expect_error(NULL, needles);
}

Test(config, invalid_env_duration, .init = setup_capture)
{
    setenv("NEXUS_SERVER_SHUTDOWN_DELAY", "soon", 1);
    const char *needles[] = {"NEXUS_SERVER_SHUTDOWN_DELAY", "server.shutdown_delay",
                             "expected a duration", "'soon'", NULL};
    expect_error(NULL, needles);
}

Test(config, invalid_env_size, .init = setup_capture)
{
    setenv("NEXUS_SERVER_CLIENT_MAX_BODY_SIZE", "-1", 1);
    const char *needles[] = {"NEXUS_SERVER_CLIENT_MAX_BODY_SIZE", "expected a size", "'-1'", NULL};
    expect_error(NULL, needles);
}

/* An invalid variable is an error even when a flag would override it. */
Test(config, invalid_env_with_flag, .init = setup_capture)
{
    setenv("NEXUS_APP_PORT", "abc", 1);
    const char *args[] = {"--port", "9000", NULL};
    const char *needles[] = {"NEXUS_APP_PORT", "'abc'", NULL};
    expect_error(args, needles);
}

Test(config, unknown_flag, .init = setup_capture)
{
    const char *args[] = {"--nope", "1", NULL};
    const char *needles[] = {"unknown option '--nope'", NULL};
    expect_error(args, needles);
}

Test(config, unknown_flag_eq, .init = setup_capture)
{
    const char *args[] = {"--nope=1", NULL};
    const char *needles[] = {"unknown option '--nope'", NULL};
    expect_error(args, needles);
}

/* Flags are whole names: neither a prefix nor the key itself is accepted. */
Test(config, unknown_flag_prefix_and_key, .init = setup_capture)
{
    const char *args[] = {"--por=1", NULL};
    const char *needles[] = {"unknown option '--por'", NULL};
    expect_error(args, needles);
}

Test(config, unknown_flag_key_form, .init = setup_capture)
{
    const char *args[] = {"--app.port=1", NULL};
    const char *needles[] = {"unknown option '--app.port'", NULL};
    expect_error(args, needles);
}

Test(config, positional_argument, .init = setup_capture)
{
    const char *args[] = {"--port", "9000", "extra", NULL};
    const char *needles[] = {"unknown option 'extra'", NULL};
    expect_error(args, needles);
}

Test(config, missing_value, .init = setup_capture)
{
    const char *args[] = {"--port", NULL};
    const char *needles[] = {"option '--port' needs a value", NULL};
    expect_error(args, needles);
}

Test(config, missing_config_value, .init = setup_capture)
{
    const char *args[] = {"--workers=2", "--config", NULL};
    const char *needles[] = {"option '--config' needs a value", NULL};
    expect_error(args, needles);
}

/* A value for a flag is taken as given, even when it looks like the next flag. */
Test(config, value_that_looks_like_a_flag, .init = setup_capture)
{
    const char *args[] = {"--port", "--workers", "2", NULL};
    const char *needles[] = {"--port", "'--workers'", NULL};
    expect_error(args, needles);
}

Test(config, header_size_below_field_size, .init = setup_capture)
{
    const char *args[] = {"--max-header-size=4k", "--large-client-header-buffer=8k", NULL};
    const char *needles[] = {"server.max_header_size", "server.large_client_header_buffer", NULL};
    expect_error(args, needles);
}

/* ---- usage ---------------------------------------------------------------------------- */

Test(config, usage_lists_flags_variables_defaults, .init = setup)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_not_null(f);
    nx_config_usage(f);
    fclose(f);
    static const char *const needles[] = {
        "--config FILE",
        "NEXUS_CONFIG",
        "--port",
        "NEXUS_APP_PORT",
        "8000",
        "--log-level",
        "NEXUS_LOGGING_LEVEL",
        "--plugins-dir",
        "NEXUS_PLUGINS_DIR",
        "--client-max-body-size",
        "NEXUS_SERVER_CLIENT_MAX_BODY_SIZE",
        "100M",
        "--max-requests-jitter",
        "NEXUS_SERVER_MAX_REQUESTS_JITTER",
        "--graceful-timeout",
        "30s",
    };
    for (size_t i = 0; i < NX_ARRAY_LEN(needles); i++)
        cr_expect(strstr(text, needles[i]) != NULL, "usage lacks '%s'", needles[i]);
    free(text);
}

/* Every flag the usage text lists is accepted by nx_config_load with its default value. */
Test(config, usage_flags_round_trip, .init = setup)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    nx_config_usage(f);
    fclose(f);
    int checked = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char flag[64], env[64], def[128];
        if (sscanf(line, " %63s %63s %127s", flag, env, def) != 3 || strncmp(flag, "--", 2) != 0)
            continue;
        if (strcmp(flag, "--config") == 0 || strcmp(flag, "--env-file") == 0)
            continue; /* they name files; their defaults are looked for, not required */
        if (strcmp(def, "-") == 0)
            def[0] = '\0';
        char arg[256];
        snprintf(arg, sizeof(arg), "%s=%s", flag, def);
        const char *args[] = {arg, NULL};
        nx_config cfg;
        cr_expect_eq(load(&cfg, args), NX_OK, "'%s' refused", arg);
        nx_config_free(&cfg);
        /* and the variable, with the same value */
        setenv(env, def, 1);
        cr_expect_eq(load(&cfg, NULL), NX_OK, "%s='%s' refused", env, def);
        nx_config_free(&cfg);
        unsetenv(env);
        checked++;
    }
    cr_expect_geq(checked, 20, "only %d flags in the usage text", checked);
    free(text);
}
