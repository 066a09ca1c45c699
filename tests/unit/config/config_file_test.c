/*
 * config_file_test.c - nx_config_load with YAML files: where each value comes from
 * (default < file < environment < flag, checked through nx_config_get's source strings),
 * how the file is found, the file's errors, NEXUS_*_FILE secrets, the guide's aliases and
 * DATABASE_URL, the production rules, and the deployment guide's own .env.production and
 * Kubernetes ConfigMap accepted verbatim.
 *
 * Every test runs in a fresh temp directory (so neither the repo's config/config.yaml nor
 * a .env is read) with no NEXUS_* variable and no DATABASE_URL set. Criterion runs each
 * test in its own process, so setenv and chdir never leak into another test.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "config_env.h"
#include "core/util.h"

#define GUIDE "/work/shared/seed/nexus-deployment-guide.md"

/* What the guide's ${SECRET_...} references become: 40 bytes, enough for production. */
#define SECRET40 "S3cr3t-0123456789-abcdefghij-KLMNOPQRST"

static char tmpdir[64];

/* Into a fresh directory: the repo's config/config.yaml and .env must not be read. */
static void leave_repo(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/nexus-cfgfile-ut-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    cr_assert_eq(chdir(tmpdir), 0);
}

/* The suite's init; Criterion runs it before a test's own .init. */
static void setup(void)
{
    if (tmpdir[0])
        return;
    clear_nexus_env();
    leave_repo();
}

static void setup_capture(void)
{
    setup();
    cr_redirect_stderr();
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void teardown(void)
{
    if (!tmpdir[0])
        return;
    if (chdir("/") == 0)
        nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    tmpdir[0] = '\0';
}

/* Everything written to stderr since the last call (the test must use setup_capture). */
static const char *take_stderr(void)
{
    static char buf[16384];
    fflush(stderr);
    FILE *f = cr_get_redirected_stderr();
    clearerr(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    return buf;
}

/* Writes text to name inside the temp dir; returns the absolute path (8 live at a time). */
static const char *write_file(const char *name, const char *text)
{
    static char paths[8][128];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof(paths[0]), "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f, "cannot write %s", p);
    fputs(text, f);
    fclose(f);
    return p;
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

/* Loads the file f (--config) with args after it; expects success. */
static void load_ok(nx_config *cfg, const char *f)
{
    const char *args[] = {"--config", f, NULL};
    cr_assert_eq(load(cfg, f ? args : NULL), NX_OK, "refused %s", f ? f : "(no file)");
}

/* Expects key's value and source. */
static void expect_key(const nx_config *cfg, const char *key, const char *value, const char *source)
{
    const char *src = NULL;
    const char *v = nx_config_get(cfg, key, &src);
    cr_assert_not_null(v, "no key %s", key);
    cr_expect_str_eq(v, value, "%s = '%s', expected '%s'", key, v, value);
    if (source)
        cr_expect_str_eq(src, source, "%s comes from '%s', expected '%s'", key, src, source);
}

/* "path:line" */
static const char *at(const char *path, int line)
{
    static char bufs[4][160];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof(bufs[0]), "%s:%d", path, line);
    return b;
}

/* Expects NX_ERR and each NULL-terminated fragment in what the load printed. */
static void expect_refused(const char *const *args, const char *const *fragments)
{
    nx_config cfg;
    int rc = load(&cfg, args);
    nx_config_free(&cfg);
    const char *err = take_stderr();
    cr_expect_eq(rc, NX_ERR, "accepted (%s %s); stderr: '%s'", args && args[0] ? args[0] : "",
                 args && args[0] && args[1] ? args[1] : "", err);
    for (size_t i = 0; fragments[i]; i++)
        cr_expect(strstr(err, fragments[i]) != NULL, "stderr '%s' lacks '%s'", err, fragments[i]);
}

/* Expects the file with text to be refused, naming path:line and every fragment. */
static void expect_file_refused(const char *text, int line, const char *const *fragments)
{
    const char *f = write_file("bad.yaml", text);
    const char *args[] = {"--config", f, NULL};
    char where[200];
    snprintf(where, sizeof(where), "%s: ", at(f, line));
    nx_config cfg;
    int rc = load(&cfg, args);
    nx_config_free(&cfg);
    const char *err = take_stderr();
    cr_expect_eq(rc, NX_ERR, "accepted:\n%s", text);
    cr_expect(strstr(err, where) != NULL, "stderr '%s' lacks '%s'\n--- file ---\n%s", err, where,
              text);
    for (size_t i = 0; fragments[i]; i++)
        cr_expect(strstr(err, fragments[i]) != NULL, "stderr '%s' lacks '%s'\n--- file ---\n%s",
                  err, fragments[i], text);
    cr_expect(strchr(err, '\n') != NULL, "not a line: '%s'", err);
}

TestSuite(config_file, .init = setup, .fini = teardown);

/* ---- precedence --------------------------------------------------------------------------- */

Test(config_file, precedence_of_one_key)
{
    const char *f = write_file("c.yaml", "# the port\n"
                                         "app:\n"
                                         "  port: 9001\n");
    nx_config cfg;

    cr_assert_eq(load(&cfg, NULL), NX_OK);
    expect_key(&cfg, "app.port", "8000", "default");
    nx_config_free(&cfg);

    load_ok(&cfg, f);
    expect_key(&cfg, "app.port", "9001", at(f, 3));
    cr_expect_eq(cfg.port, 9001);
    expect_key(&cfg, "app.host", "127.0.0.1", "default");
    cr_expect_str_eq(cfg.config_file, f);
    nx_config_free(&cfg);

    setenv("NEXUS_APP_PORT", "9002", 1);
    load_ok(&cfg, f);
    expect_key(&cfg, "app.port", "9002", "environment NEXUS_APP_PORT");
    cr_expect_eq(cfg.port, 9002);
    nx_config_free(&cfg);

    const char *args[] = {"--port", "9003", "--config", f, NULL};
    cr_assert_eq(load(&cfg, args), NX_OK);
    expect_key(&cfg, "app.port", "9003", "flag --port");
    cr_expect_eq(cfg.port, 9003);
    nx_config_free(&cfg);

    char cfg_arg[200];
    snprintf(cfg_arg, sizeof(cfg_arg), "--config=%s", f);
    const char *args2[] = {cfg_arg, "--port=9004", NULL};
    cr_assert_eq(load(&cfg, args2), NX_OK);
    expect_key(&cfg, "app.port", "9004", "flag --port");
    cr_expect_str_eq(cfg.config_file, f);
    nx_config_free(&cfg);
}

/* The fifth source, being added: file < .env (or --env-file) < environment < flag. */
Test(config_file, precedence_with_env_file)
{
    const char *f = write_file("c.yaml", "app:\n  port: 9001\n  workers: 2\n");
    write_file(".env", "# comment\nNEXUS_APP_PORT=9005\nNEXUS_APP_WORKERS=3\n");
    nx_config cfg;
    load_ok(&cfg, f);
    const char *src = NULL;
    expect_key(&cfg, "app.port", "9005", NULL);
    nx_config_get(&cfg, "app.port", &src);
    cr_expect(strstr(src, ".env:2") != NULL, "source '%s' does not name .env:2", src);
    expect_key(&cfg, "app.workers", "3", NULL);
    nx_config_free(&cfg);

    setenv("NEXUS_APP_PORT", "9006", 1);
    load_ok(&cfg, f);
    expect_key(&cfg, "app.port", "9006", "environment NEXUS_APP_PORT");
    expect_key(&cfg, "app.workers", "3", NULL);
    nx_config_free(&cfg);

    const char *other = write_file("other.env", "NEXUS_APP_WORKERS=4\n");
    const char *args[] = {"--config", f, "--env-file", other, "--port", "9007", NULL};
    cr_assert_eq(load(&cfg, args), NX_OK);
    expect_key(&cfg, "app.port", "9007", "flag --port");
    expect_key(&cfg, "app.workers", "4", NULL);
    nx_config_get(&cfg, "app.workers", &src);
    cr_expect(strstr(src, other) != NULL, "source '%s' does not name %s", src, other);
    nx_config_free(&cfg);
}

/* A key without a flag: default < file < alias variable < canonical variable. */
Test(config_file, precedence_without_flag)
{
    const char *f = write_file("c.yaml", "cache:\n"
                                         "  type: redis\n"
                                         "  redis:\n"
                                         "    host: from-file\n");
    nx_config cfg;
    load_ok(&cfg, NULL);
    expect_key(&cfg, "cache.redis.host", "localhost", "default");
    nx_config_free(&cfg);

    load_ok(&cfg, f);
    expect_key(&cfg, "cache.redis.host", "from-file", at(f, 4));
    expect_key(&cfg, "cache.type", "redis", at(f, 2));
    nx_config_free(&cfg);

    setenv("NEXUS_CACHE_HOST", "from-alias", 1);
    load_ok(&cfg, f);
    expect_key(&cfg, "cache.redis.host", "from-alias", "environment NEXUS_CACHE_HOST");
    nx_config_free(&cfg);

    setenv("NEXUS_CACHE_REDIS_HOST", "from-canonical", 1);
    load_ok(&cfg, f);
    expect_key(&cfg, "cache.redis.host", "from-canonical", "environment NEXUS_CACHE_REDIS_HOST");
    nx_config_free(&cfg);
}

/* A value set at every level keeps only the winner's text; the typed view follows it. */
Test(config_file, typed_view_follows_winner)
{
    const char *f = write_file("c.yaml", "server:\n"
                                         "  graceful_timeout: 2m\n"
                                         "  keepalive_timeout: 750ms\n"
                                         "  client_max_body_size: 1k\n"
                                         "logging:\n"
                                         "  access_log: \"off\"\n"
                                         "app:\n"
                                         "  workers: 3\n");
    setenv("NEXUS_SERVER_GRACEFUL_TIMEOUT", "45s", 1);
    const char *args[] = {"--config", f, "--workers", "2", NULL};
    nx_config cfg;
    cr_assert_eq(load(&cfg, args), NX_OK);
    cr_expect_eq(cfg.graceful_timeout_ms, 45000);
    cr_expect_eq(cfg.http.keepalive_ms, 750);
    cr_expect_eq(cfg.http.max_body, 1024);
    cr_expect_str_eq(cfg.access_log, "off");
    cr_expect_eq(cfg.workers, 2);
    expect_key(&cfg, "app.workers", "2", "flag --workers");
    expect_key(&cfg, "logging.access_log", "off", at(f, 6));
    nx_config_free(&cfg);
}

/* ---- which file ---------------------------------------------------------------------------- */

Test(config_file, config_flag_beats_nexus_config)
{
    const char *a = write_file("a.yaml", "app:\n  port: 9101\n");
    const char *b = write_file("b.yaml", "app:\n  port: 9102\n");
    nx_config cfg;

    setenv("NEXUS_CONFIG", a, 1);
    load_ok(&cfg, NULL);
    expect_key(&cfg, "app.port", "9101", at(a, 2));
    cr_expect_str_eq(cfg.config_file, a);
    nx_config_free(&cfg);

    load_ok(&cfg, b);
    expect_key(&cfg, "app.port", "9102", at(b, 2));
    cr_expect_str_eq(cfg.config_file, b);
    nx_config_free(&cfg);
}

/* The file NEXUS_CONFIG names is not even read when --config is given. */
Test(config_file, nexus_config_not_read_with_flag)
{
    const char *bad = write_file("bad.yaml", "app:\n  prot: 1\n");
    const char *good = write_file("good.yaml", "app:\n  port: 9103\n");
    setenv("NEXUS_CONFIG", bad, 1);
    nx_config cfg;
    load_ok(&cfg, good);
    cr_expect_eq(cfg.port, 9103);
    nx_config_free(&cfg);
}

Test(config_file, discovers_config_dir)
{
    cr_assert_eq(mkdir("config", 0755), 0);
    write_file("config/config.yaml", "app:\n  port: 9201\n");
    nx_config cfg;
    load_ok(&cfg, NULL);
    cr_expect_eq(cfg.port, 9201);
    cr_expect_str_eq(cfg.config_file, "config/config.yaml");
    expect_key(&cfg, "app.port", "9201", "config/config.yaml:2");
    nx_config_free(&cfg);

    /* NEXUS_CONFIG and --config both beat the discovered file */
    const char *other = write_file("other.yaml", "app:\n  port: 9202\n");
    setenv("NEXUS_CONFIG", other, 1);
    load_ok(&cfg, NULL);
    cr_expect_eq(cfg.port, 9202);
    cr_expect_str_eq(cfg.config_file, other);
    nx_config_free(&cfg);
    unsetenv("NEXUS_CONFIG");
    const char *flag = write_file("flag.yaml", "app:\n  port: 9203\n");
    load_ok(&cfg, flag);
    cr_expect_eq(cfg.port, 9203);
    nx_config_free(&cfg);
}

Test(config_file, no_config_dir_no_file)
{
    /* a config.yaml beside, not in config/, is not the default file */
    write_file("config.yaml", "app:\n  prot: 1\n");
    cr_assert_eq(mkdir("config", 0755), 0);
    nx_config cfg;
    load_ok(&cfg, NULL);
    cr_expect_null(cfg.config_file);
    expect_key(&cfg, "app.port", "8000", "default");
    nx_config_free(&cfg);
}

/* The discovered file is really read: its errors stop the load. */
Test(config_file, discovered_file_errors, .init = setup_capture)
{
    cr_assert_eq(mkdir("config", 0755), 0);
    write_file("config/config.yaml", "app:\n  port: zero\n");
    static const char *const frag[] = {"config/config.yaml:2", "app.port", "'zero'", NULL};
    expect_refused(NULL, frag);
}

Test(config_file, missing_file_refused, .init = setup_capture)
{
    static const char *const frag[] = {"/nonexistent/nexus.yaml", "No such file", NULL};
    const char *args[] = {"--config", "/nonexistent/nexus.yaml", NULL};
    expect_refused(args, frag);
    setenv("NEXUS_CONFIG", "/nonexistent/nexus.yaml", 1);
    expect_refused(NULL, frag);
}

/* ---- the file's errors ------------------------------------------------------------------- */

Test(config_file, unknown_key_with_suggestion, .init = setup_capture)
{
    static const struct {
        const char *text;
        int line;
        const char *unknown, *suggestion;
    } rows[] = {
        {"app:\n  name: x\n  prot: 8000\n", 3, "'app.prot'", "did you mean 'app.port'"},
        {"databse:\n  host: db\n", 2, "'databse.host'", "did you mean 'database.host'"},
        {"cache:\n  redis:\n    hots: r\n", 3, "'cache.redis.hots'",
         "did you mean 'cache.redis.host'"},
        {"logging:\n  levle: info\n", 2, "'logging.levle'", "did you mean 'logging.level'"},
        {"server:\n  gracefull_timeout: 3s\n", 2, "'server.gracefull_timeout'",
         "did you mean 'server.graceful_timeout'"},
        {"auth:\n  jwt_secert: x\n", 2, "'auth.jwt_secert'", "did you mean 'auth.jwt_secret'"},
    };
    for (size_t i = 0; i < NX_ARRAY_LEN(rows); i++) {
        const char *frag[] = {"unknown key", rows[i].unknown, rows[i].suggestion, NULL};
        expect_file_refused(rows[i].text, rows[i].line, frag);
    }
}

Test(config_file, unknown_key_without_suggestion, .init = setup_capture)
{
    static const char *const frag[] = {"unknown key 'zzzzzz.qqqqqqq'", NULL};
    expect_file_refused("app:\n  port: 1\nzzzzzz:\n  qqqqqqq: 1\n", 4, frag);
    cr_expect_null(strstr(take_stderr(), "did you mean"));
    const char *f = write_file("far.yaml", "zzzzzz:\n  qqqqqqq: 1\n");
    const char *args[] = {"--config", f, NULL};
    static const char *const frag2[] = {"unknown key", NULL};
    expect_refused(args, frag2);
    nx_config cfg;
    cr_expect_eq(load(&cfg, args), NX_ERR);
    nx_config_free(&cfg);
    cr_expect_null(strstr(take_stderr(), "did you mean"), "a suggestion for a far-off key");
}

/* A section given a value, or a key given a mapping. */
Test(config_file, wrong_shape, .init = setup_capture)
{
    static const char *const frag[] = {"'database'", "section", NULL};
    expect_file_refused("app:\n  port: 1\ndatabase: postgres\n", 3, frag);
    static const char *const frag2[] = {"app.port", NULL};
    expect_file_refused("app:\n  port:\n    value: 1\n", 3, frag2);
    static const char *const frag3[] = {"'app.port'", NULL};
    expect_file_refused("app:\n  port: {}\n", 2, frag3);
}

/* An empty section (all its keys commented out, or {}) changes nothing. */
Test(config_file, empty_section_accepted)
{
    const char *f = write_file("c.yaml", "cache: {}\napp:\n  port: 9300\n");
    nx_config cfg;
    load_ok(&cfg, f);
    cr_expect_eq(cfg.port, 9300);
    expect_key(&cfg, "cache.type", "memory", "default");
    nx_config_free(&cfg);
}

Test(config_file, type_errors_name_file_line, .init = setup_capture)
{
    static const struct {
        const char *text;
        int line;
        const char *key, *expectation, *got;
    } rows[] = {
        {"app:\n  port: http\n", 2, "app.port", "expected an integer from 1 to 65535", "'http'"},
        {"app:\n  name: x\n  port: 70000\n", 3, "app.port", "from 1 to 65535", "'70000'"},
        {"app:\n  debug: maybe\n", 2, "app.debug", "expected true or false", "'maybe'"},
        {"app:\n  environment: prod\n", 2, "app.environment",
         "expected one of development|testing|staging|production", "'prod'"},
        {"server:\n  graceful_timeout: soon\n", 2, "server.graceful_timeout", "expected a duration",
         "'soon'"},
        {"server:\n  client_max_body_size: 10q\n", 2, "server.client_max_body_size",
         "expected a size", "'10q'"},
        {"cache:\n  redis:\n    port: 0\n", 3, "cache.redis.port", "from 1 to 65535", "'0'"},
        {"cache:\n  port: 99999\n", 2, "cache.redis.port", "from 1 to 65535", "'99999'"},
        {"database:\n  type: oracle\n", 2, "database.type", "sqlite|postgresql|mysql", "'oracle'"},
        {"app:\n  port: [1, 2]\n", 2, "app.port", "expected an integer", "'1,2'"},
        {"logging:\n  level: verbose\n", 2, "logging.level", "debug|info|warn|error", "'verbose'"},
    };
    for (size_t i = 0; i < NX_ARRAY_LEN(rows); i++) {
        const char *frag[] = {rows[i].key, rows[i].expectation, rows[i].got, NULL};
        expect_file_refused(rows[i].text, rows[i].line, frag);
    }
}

/* The YAML reader's errors reach the operator with file:line. */
Test(config_file, yaml_errors_reported, .init = setup_capture)
{
    unsetenv("NX_CFG_UT_UNSET");
    static const char *const frag[] = {"${NX_CFG_UT_UNSET}", NULL};
    expect_file_refused("database:\n  host: db\n  password: \"${NX_CFG_UT_UNSET}\"\n", 3, frag);
    static const char *const frag2[] = {"invalid YAML", NULL};
    expect_file_refused("app:\n  port: 1\n bad: 2\n", 3, frag2);
    static const char *const frag3[] = {"alias", NULL};
    expect_file_refused("app:\n  host: &h x\n  name: *h\n", 2, frag3); /* at the anchor */
}

/* ${VAR} expansion feeds the typed check, with the default when unset. */
Test(config_file, expansion_in_values)
{
    setenv("NX_CFG_UT_PORT", "9400", 1);
    unsetenv("NX_CFG_UT_UNSET");
    const char *f = write_file("c.yaml", "app:\n"
                                         "  port: ${NX_CFG_UT_PORT}\n"
                                         "  workers: ${NX_CFG_UT_UNSET:-3}\n");
    nx_config cfg;
    load_ok(&cfg, f);
    cr_expect_eq(cfg.port, 9400);
    cr_expect_eq(cfg.workers, 3);
    expect_key(&cfg, "app.port", "9400", at(f, 2));
    nx_config_free(&cfg);
}

/* ---- NEXUS_*_FILE secrets ---------------------------------------------------------------- */

Test(config_file, secret_file_trailing_newline)
{
    const char *p = write_file("db_password", "hunter2-db-password\n");
    setenv("NEXUS_DATABASE_PASSWORD_FILE", p, 1);
    const char *j = write_file("jwt", SECRET40 "\r\n");
    setenv("NEXUS_AUTH_JWT_SECRET_FILE", j, 1);
    const char *two = write_file("redis", "two-newlines\n\n");
    setenv("NEXUS_CACHE_REDIS_PASSWORD_FILE", two, 1);
    nx_config cfg;
    load_ok(&cfg, NULL);
    const char *src = NULL;
    expect_key(&cfg, "database.password", "hunter2-db-password", NULL);
    nx_config_get(&cfg, "database.password", &src);
    cr_expect(strstr(src, "NEXUS_DATABASE_PASSWORD_FILE") != NULL, "source '%s'", src);
    cr_expect(strstr(src, p) != NULL, "source '%s' does not name the file", src);
    expect_key(&cfg, "auth.jwt_secret", SECRET40, NULL);
    expect_key(&cfg, "cache.redis.password", "two-newlines\n", NULL);
    nx_config_free(&cfg);
}

/* _FILE works for every key, typed like the plain variable; an empty file is an empty value. */
Test(config_file, file_variable_for_typed_key, .init = setup_capture)
{
    setenv("NEXUS_APP_PORT_FILE", write_file("port", "9500\n"), 1);
    setenv("NEXUS_DATABASE_USER_FILE", write_file("user", ""), 1);
    nx_config cfg;
    cr_assert_eq(load(&cfg, NULL), NX_OK, "%s", take_stderr());
    cr_expect_eq(cfg.port, 9500);
    expect_key(&cfg, "database.user", "", NULL);
    nx_config_free(&cfg);
    cr_expect_str_eq(take_stderr(), "", "a _FILE variable was warned about");

    setenv("NEXUS_APP_PORT_FILE", write_file("port2", "eighty\n"), 1);
    static const char *const frag[] = {"NEXUS_APP_PORT_FILE", "app.port", "'eighty'", NULL};
    expect_refused(NULL, frag);
}

/* NEXUS_SERVER_PID_FILE is a key of its own, not the _FILE form of NEXUS_SERVER_PID. */
Test(config_file, pid_file_is_a_key, .init = setup_capture)
{
    setenv("NEXUS_SERVER_PID_FILE", "/nonexistent/nexus.pid", 1);
    nx_config cfg;
    cr_assert_eq(load(&cfg, NULL), NX_OK, "%s", take_stderr());
    cr_expect_str_eq(cfg.pid_file, "/nonexistent/nexus.pid");
    nx_config_free(&cfg);
    cr_expect_str_eq(take_stderr(), "");
}

Test(config_file, secret_plain_and_file_both_set, .init = setup_capture)
{
    setenv("NEXUS_DATABASE_PASSWORD", "a", 1);
    setenv("NEXUS_DATABASE_PASSWORD_FILE", write_file("pw", "b\n"), 1);
    static const char *const frag[] = {"NEXUS_DATABASE_PASSWORD", "NEXUS_DATABASE_PASSWORD_FILE",
                                       "both", NULL};
    expect_refused(NULL, frag);
}

Test(config_file, secret_file_unreadable, .init = setup_capture)
{
    setenv("NEXUS_AUTH_JWT_SECRET_FILE", "/nonexistent/run/secrets/jwt", 1);
    static const char *const frag[] = {"NEXUS_AUTH_JWT_SECRET_FILE", "/nonexistent/run/secrets/jwt",
                                       "No such file", NULL};
    expect_refused(NULL, frag);
}

/* A directory (a secret mount named instead of the file in it) is not an empty secret. */
Test(config_file, secret_file_is_directory, .init = setup_capture)
{
    cr_assert_eq(mkdir("secrets", 0755), 0);
    char dir[128];
    snprintf(dir, sizeof(dir), "%s/secrets", tmpdir);
    setenv("NEXUS_DATABASE_PASSWORD_FILE", dir, 1);
    const char *const frag[] = {"NEXUS_DATABASE_PASSWORD_FILE", dir, NULL};
    expect_refused(NULL, frag);
}

Test(config_file, secret_file_too_large, .init = setup_capture)
{
    static char big[20000];
    memset(big, 'x', sizeof(big) - 1);
    setenv("NEXUS_DATABASE_PASSWORD_FILE", write_file("big", big), 1);
    static const char *const frag[] = {"NEXUS_DATABASE_PASSWORD_FILE", "larger than", NULL};
    expect_refused(NULL, frag);
}

/* ---- aliases and DATABASE_URL ------------------------------------------------------------ */

/* The guide's ConfigMap says cache.host / cache.port; they are cache.redis.*. */
Test(config_file, alias_keys_in_file)
{
    const char *f = write_file("c.yaml", "cache:\n"
                                         "  host: redis-service\n"
                                         "  port: 6380\n"
                                         "  password: pw-in-file\n");
    nx_config cfg;
    load_ok(&cfg, f);
    expect_key(&cfg, "cache.redis.host", "redis-service", at(f, 2));
    expect_key(&cfg, "cache.redis.port", "6380", at(f, 3));
    expect_key(&cfg, "cache.redis.password", "pw-in-file", at(f, 4));
    expect_key(&cfg, "cache.host", "redis-service", at(f, 2));
    nx_config_free(&cfg);
}

Test(config_file, alias_variables, .init = setup_capture)
{
    setenv("NEXUS_CACHE_HOST", "redis", 1);
    setenv("NEXUS_CACHE_PORT", "6390", 1);
    setenv("NEXUS_CACHE_PASSWORD_FILE", write_file("rpw", "redis-pw\n"), 1);
    nx_config cfg;
    cr_assert_eq(load(&cfg, NULL), NX_OK, "%s", take_stderr());
    expect_key(&cfg, "cache.redis.host", "redis", "environment NEXUS_CACHE_HOST");
    expect_key(&cfg, "cache.redis.port", "6390", "environment NEXUS_CACHE_PORT");
    expect_key(&cfg, "cache.redis.password", "redis-pw", NULL);
    nx_config_free(&cfg);
    cr_expect_str_eq(take_stderr(), "", "an alias variable was warned about");
}

Test(config_file, canonical_variable_beats_alias)
{
    setenv("NEXUS_CACHE_REDIS_HOST", "canonical", 1);
    setenv("NEXUS_CACHE_HOST", "alias", 1);
    setenv("NEXUS_CACHE_PORT", "1111", 1);
    setenv("NEXUS_CACHE_REDIS_PORT", "2222", 1);
    nx_config cfg;
    load_ok(&cfg, NULL);
    expect_key(&cfg, "cache.redis.host", "canonical", "environment NEXUS_CACHE_REDIS_HOST");
    expect_key(&cfg, "cache.redis.port", "2222", "environment NEXUS_CACHE_REDIS_PORT");
    nx_config_free(&cfg);
}

Test(config_file, database_url)
{
    const char *f = write_file("c.yaml", "database:\n  url: postgresql://file/db\n");
    nx_config cfg;
    load_ok(&cfg, f);
    expect_key(&cfg, "database.url", "postgresql://file/db", at(f, 2));
    nx_config_free(&cfg);

    setenv("DATABASE_URL", "postgresql://u:pw@plain/db", 1);
    load_ok(&cfg, f);
    expect_key(&cfg, "database.url", "postgresql://u:pw@plain/db", "environment DATABASE_URL");
    nx_config_free(&cfg);

    setenv("NEXUS_DATABASE_URL", "postgresql://u:pw@nexus/db", 1);
    load_ok(&cfg, f);
    expect_key(&cfg, "database.url", "postgresql://u:pw@nexus/db",
               "environment NEXUS_DATABASE_URL");
    nx_config_free(&cfg);
}

/* ---- unknown variables --------------------------------------------------------------------- */

Test(config_file, unknown_variable_warns, .init = setup_capture)
{
    setenv("NEXUS_APP_PROT", "9000", 1);
    setenv("NEXUS_ZZZZ_QQQQ_WWWW", "1", 1);
    nx_config cfg;
    cr_assert_eq(load(&cfg, NULL), NX_OK, "a stray variable stopped the load");
    cr_expect_eq(cfg.port, 8000);
    nx_config_free(&cfg);
    const char *err = take_stderr();
    cr_expect(strstr(err, "warning") != NULL, "'%s'", err);
    cr_expect(strstr(err, "unknown variable NEXUS_APP_PROT") != NULL, "'%s'", err);
    cr_expect(strstr(err, "NEXUS_APP_PORT") != NULL, "no suggestion: '%s'", err);
    cr_expect(strstr(err, "unknown variable NEXUS_ZZZZ_QQQQ_WWWW") != NULL, "'%s'", err);
}

/*
 * config/config.prod.yaml reads ${NEXUS_DB_HOST:-...} and ${NEXUS_REDIS_HOST:-...}: a
 * variable the file uses is not "ignored", and must not be warned about as unknown.
 */
Test(config_file, variable_used_by_file_not_warned, .init = setup_capture)
{
    setenv("NEXUS_REDIS_HOST", "redis-from-var", 1);
    const char *f = write_file("c.yaml", "cache:\n  redis:\n    host: \"${NEXUS_REDIS_HOST}\"\n");
    nx_config cfg;
    cr_assert_eq(load(&cfg, (const char *const[]){"--config", f, NULL}), NX_OK);
    expect_key(&cfg, "cache.redis.host", "redis-from-var", at(f, 3));
    nx_config_free(&cfg);
    const char *err = take_stderr();
    cr_expect_null(strstr(err, "NEXUS_REDIS_HOST"), "used variable warned about: '%s'", err);
}

/* ---- production rules ---------------------------------------------------------------------- */

static void write_prod(const char *extra)
{
    char text[1024];
    snprintf(text, sizeof(text), "app:\n  environment: production\n%s", extra);
    write_file("prod.yaml", text);
}

static const char *prod_path(void)
{
    static char p[128];
    snprintf(p, sizeof(p), "%s/prod.yaml", tmpdir);
    return p;
}

Test(config_file, production_debug_refused, .init = setup_capture)
{
    setenv("NEXUS_AUTH_JWT_SECRET", SECRET40, 1);
    write_prod("  debug: true\n");
    const char *args[] = {"--config", prod_path(), NULL};
    const char *frag[] = {"app.debug is true", "production", at(prod_path(), 3), NULL};
    expect_refused(args, frag);
    /* from a variable too, named as the source */
    write_prod("");
    setenv("NEXUS_APP_DEBUG", "yes", 1);
    const char *frag2[] = {"app.debug", "environment NEXUS_APP_DEBUG", NULL};
    expect_refused(args, frag2);
}

Test(config_file, production_jwt_secret_missing, .init = setup_capture)
{
    write_prod("");
    const char *args[] = {"--config", prod_path(), NULL};
    const char *frag[] = {"auth.jwt_secret is not set", "32 bytes", NULL};
    expect_refused(args, frag);
}

Test(config_file, production_jwt_secret_short, .init = setup_capture)
{
    write_prod("");
    const char *args[] = {"--config", prod_path(), NULL};
    setenv("NEXUS_AUTH_JWT_SECRET", "0123456789abcdef0123456789abcde", 1); /* 31 */
    const char *frag[] = {"auth.jwt_secret", "shorter than 32 bytes",
                          "environment NEXUS_AUTH_JWT_SECRET", NULL};
    expect_refused(args, frag);
    /* 32 bytes is enough */
    setenv("NEXUS_AUTH_JWT_SECRET", "0123456789abcdef0123456789abcdef", 1);
    nx_config cfg;
    cr_expect_eq(load(&cfg, args), NX_OK, "%s", take_stderr());
    nx_config_free(&cfg);
}

Test(config_file, production_jwt_secret_placeholder, .init = setup_capture)
{
    static const char *const placeholders[] = {"changeme",        "CHANGEME",
                                               "change-me",       "secret",
                                               "your-secret-key", "<base64-encoded-secret>"};
    write_prod("");
    const char *args[] = {"--config", prod_path(), NULL};
    for (size_t i = 0; i < NX_ARRAY_LEN(placeholders); i++) {
        setenv("NEXUS_AUTH_JWT_SECRET", placeholders[i], 1);
        const char *frag[] = {"auth.jwt_secret is a placeholder", NULL};
        expect_refused(args, frag);
    }
}

/* The secret is never printed by the rule that refuses it. */
Test(config_file, production_jwt_message_hides_secret, .init = setup_capture)
{
    write_prod("auth:\n  jwt_secret: tooShortButSecretValue\n");
    const char *args[] = {"--config", prod_path(), NULL};
    const char *frag[] = {"auth.jwt_secret", at(prod_path(), 4), NULL};
    expect_refused(args, frag);
    nx_config cfg;
    cr_expect_eq(load(&cfg, args), NX_ERR);
    nx_config_free(&cfg);
    cr_expect_null(strstr(take_stderr(), "tooShortButSecretValue"));
}

Test(config_file, production_cors_wildcard_with_credentials, .init = setup_capture)
{
    setenv("NEXUS_AUTH_JWT_SECRET", SECRET40, 1);
    static const char *const cors[] = {
        "security:\n  cors_origins: \"*\"\n  cors_allow_credentials: true\n",
        "security:\n  cors_origins: [\"https://a.example\", \"*\"]\n  cors_allow_credentials: "
        "true\n",
        "security:\n  cors_origins:\n    - \"*\"\n    - https://a.example\n  "
        "cors_allow_credentials: "
        "yes\n",
    };
    const char *args[] = {"--config", prod_path(), NULL};
    for (size_t i = 0; i < NX_ARRAY_LEN(cors); i++) {
        write_prod(cors[i]);
        const char *frag[] = {"security.cors_origins", "any origin", "credentials", NULL};
        expect_refused(args, frag);
    }
}

/* "a, b" is how a list is written in a variable; the space must not hide the wildcard. */
Test(config_file, production_cors_wildcard_from_variable, .init = setup_capture)
{
    setenv("NEXUS_AUTH_JWT_SECRET", SECRET40, 1);
    setenv("NEXUS_SECURITY_CORS_ALLOW_CREDENTIALS", "true", 1);
    write_prod("");
    const char *args[] = {"--config", prod_path(), NULL};
    static const char *const values[] = {"*", "https://a.example,*", "https://a.example, *", " *"};
    for (size_t i = 0; i < NX_ARRAY_LEN(values); i++) {
        setenv("NEXUS_SECURITY_CORS_ORIGINS", values[i], 1);
        const char *frag[] = {"security.cors_origins", "environment NEXUS_SECURITY_CORS_ORIGINS",
                              NULL};
        expect_refused(args, frag);
    }
}

Test(config_file, production_cors_allowed_cases, .init = setup_capture)
{
    setenv("NEXUS_AUTH_JWT_SECRET", SECRET40, 1);
    static const char *const ok[] = {
        "security:\n  cors_origins: \"*\"\n  cors_allow_credentials: false\n",
        "security:\n  cors_origins: [https://a.example, https://b.example]\n"
        "  cors_allow_credentials: true\n",
    };
    const char *args[] = {"--config", prod_path(), NULL};
    for (size_t i = 0; i < NX_ARRAY_LEN(ok); i++) {
        write_prod(ok[i]);
        nx_config cfg;
        cr_expect_eq(load(&cfg, args), NX_OK, "refused:\n%s\n%s", ok[i], take_stderr());
        nx_config_free(&cfg);
    }
}

/* Outside production the same settings are accepted. */
Test(config_file, rules_only_in_production, .init = setup_capture)
{
    static const char *const envs[] = {"development", "testing", "staging"};
    for (size_t i = 0; i < NX_ARRAY_LEN(envs); i++) {
        char text[512];
        snprintf(text, sizeof(text),
                 "app:\n  environment: %s\n  debug: true\nauth:\n  jwt_secret: changeme\n"
                 "security:\n  cors_origins: \"*\"\n  cors_allow_credentials: true\n",
                 envs[i]);
        const char *f = write_file("dev.yaml", text);
        nx_config cfg;
        cr_expect_eq(load(&cfg, (const char *const[]){"--config", f, NULL}), NX_OK, "%s: %s",
                     envs[i], take_stderr());
        nx_config_free(&cfg);
    }
    /* and production comes from any source: here a flag over a development file */
    const char *f = write_file("dev.yaml", "app:\n  environment: development\n");
    const char *frag[] = {"auth.jwt_secret", "flag --environment", NULL};
    expect_refused((const char *const[]){"--config", f, "--environment", "production", NULL}, frag);
}

/* ---- config show ----------------------------------------------------------------------------- */

Test(config_file, show_redacts_secrets_and_names_sources)
{
    const char *f = write_file("c.yaml", "cache:\n"
                                         "  redis:\n"
                                         "    password: redis-secret-in-file\n"
                                         "monitoring:\n"
                                         "  sentry_dsn: https://dsn-secret@sentry.example/1\n"
                                         "app:\n"
                                         "  port: 9600\n");
    setenv("NEXUS_DATABASE_PASSWORD", "db-secret-in-env", 1);
    setenv("NEXUS_AUTH_JWT_SECRET_FILE", write_file("jwt", "jwt-secret-in-file\n"), 1);
    setenv("DATABASE_URL", "postgresql://u:url-secret@h/db", 1);
    nx_config cfg;
    load_ok(&cfg, f);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    cr_assert_not_null(out);
    nx_config_show(&cfg, out);
    fclose(out);
    nx_config_free(&cfg);
    static const char *const secrets[] = {"redis-secret-in-file", "dsn-secret", "db-secret-in-env",
                                          "jwt-secret-in-file", "url-secret"};
    for (size_t i = 0; i < NX_ARRAY_LEN(secrets); i++)
        cr_expect_null(strstr(text, secrets[i]), "show prints '%s':\n%s", secrets[i], text);
    static const char *const needles[] = {
        "(redacted)",
        "# environment NEXUS_DATABASE_PASSWORD",
        "NEXUS_AUTH_JWT_SECRET_FILE",
        "# environment DATABASE_URL",
        "\"9600\"",
        "# default",
    };
    for (size_t i = 0; i < NX_ARRAY_LEN(needles); i++)
        cr_expect(strstr(text, needles[i]) != NULL, "show lacks '%s':\n%s", needles[i], text);
    char src[200];
    snprintf(src, sizeof(src), "# %s", at(f, 7));
    cr_expect(strstr(text, src) != NULL, "show lacks '%s':\n%s", src, text);
    snprintf(src, sizeof(src), "# %s", at(f, 3));
    cr_expect(strstr(text, src) != NULL, "show lacks '%s':\n%s", src, text);
    free(text);
}

/* ---- the deployment guide -------------------------------------------------------------------- */

/* Every variable of the guide's .env.production block and the key it must set. */
static const struct {
    const char *var, *key;
} guide_vars[] = {
    {"NEXUS_APP_NAME", "app.name"},
    {"NEXUS_APP_ENVIRONMENT", "app.environment"},
    {"NEXUS_APP_DEBUG", "app.debug"},
    {"NEXUS_APP_HOST", "app.host"},
    {"NEXUS_APP_PORT", "app.port"},
    {"NEXUS_APP_WORKERS", "app.workers"},
    {"NEXUS_DATABASE_TYPE", "database.type"},
    {"NEXUS_DATABASE_HOST", "database.host"},
    {"NEXUS_DATABASE_PORT", "database.port"},
    {"NEXUS_DATABASE_NAME", "database.name"},
    {"NEXUS_DATABASE_USER", "database.user"},
    {"NEXUS_DATABASE_PASSWORD", "database.password"},
    {"NEXUS_DATABASE_POOL_SIZE", "database.pool_size"},
    {"NEXUS_DATABASE_MAX_OVERFLOW", "database.max_overflow"},
    {"NEXUS_CACHE_TYPE", "cache.type"},
    {"NEXUS_CACHE_REDIS_HOST", "cache.redis.host"},
    {"NEXUS_CACHE_REDIS_PORT", "cache.redis.port"},
    {"NEXUS_CACHE_REDIS_PASSWORD", "cache.redis.password"},
    {"NEXUS_CACHE_REDIS_DB", "cache.redis.db"},
    {"NEXUS_CACHE_REDIS_MAX_CONNECTIONS", "cache.redis.max_connections"},
    {"NEXUS_AUTH_JWT_SECRET", "auth.jwt_secret"},
    {"NEXUS_AUTH_JWT_ALGORITHM", "auth.jwt_algorithm"},
    {"NEXUS_AUTH_TOKEN_EXPIRY", "auth.token_expiry"},
    {"NEXUS_AUTH_REFRESH_TOKEN_EXPIRY", "auth.refresh_token_expiry"},
    {"NEXUS_SECURITY_HTTPS_ENABLED", "security.https_enabled"},
    {"NEXUS_SECURITY_HTTPS_REDIRECT", "security.https_redirect"},
    {"NEXUS_SECURITY_RATE_LIMIT_ENABLED", "security.rate_limit_enabled"},
    {"NEXUS_SECURITY_RATE_LIMIT_REQUESTS", "security.rate_limit_requests"},
    {"NEXUS_SECURITY_RATE_LIMIT_WINDOW", "security.rate_limit_window"},
    {"NEXUS_MONITORING_SENTRY_DSN", "monitoring.sentry_dsn"},
    {"NEXUS_MONITORING_SENTRY_ENVIRONMENT", "monitoring.sentry_environment"},
    {"NEXUS_MONITORING_PROMETHEUS_ENABLED", "monitoring.prometheus_enabled"},
    {"NEXUS_MONITORING_METRICS_PORT", "monitoring.metrics_port"},
};

typedef struct guide_line {
    char name[96];
    char value[256];
} guide_line;

/* The NAME=value lines of the guide's .env.production block, ${...} made SECRET40. */
static size_t read_env_production(guide_line *out, size_t max)
{
    FILE *f = fopen(GUIDE, "r");
    cr_assert_not_null(f, "cannot read %s", GUIDE);
    char line[512];
    bool in_block = false;
    size_t n = 0;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!in_block) {
            in_block = strcmp(line, "# .env.production") == 0;
            continue;
        }
        if (strncmp(line, "```", 3) == 0)
            break;
        if (!line[0] || line[0] == '#')
            continue;
        char *eq = strchr(line, '=');
        cr_assert_not_null(eq, "not NAME=value in the guide: '%s'", line);
        cr_assert_lt(n, max);
        *eq = '\0';
        snprintf(out[n].name, sizeof(out[n].name), "%.95s", line);
        /* the value, with each ${...} replaced */
        size_t vl = 0;
        for (const char *p = eq + 1; *p && vl + 41 < sizeof(out[n].value);) {
            const char *close = strncmp(p, "${", 2) == 0 ? strchr(p, '}') : NULL;
            if (close) {
                memcpy(out[n].value + vl, SECRET40, 40);
                vl += 40;
                p = close + 1;
            } else {
                out[n].value[vl++] = *p++;
            }
        }
        out[n].value[vl] = '\0';
        n++;
    }
    fclose(f);
    cr_assert(in_block, "no '# .env.production' block in %s", GUIDE);
    return n;
}

Test(config_file, guide_env_production, .init = setup_capture)
{
    guide_line lines[64];
    size_t n = read_env_production(lines, NX_ARRAY_LEN(lines));
    cr_expect_eq(n, NX_ARRAY_LEN(guide_vars), "the guide has %zu variables, the table %zu", n,
                 NX_ARRAY_LEN(guide_vars));
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(setenv(lines[i].name, lines[i].value, 1), 0);
    nx_config cfg;
    int rc = load(&cfg, NULL);
    const char *err = take_stderr();
    cr_assert_eq(rc, NX_OK, "the guide's .env.production refused: %s", err);
    cr_expect_str_eq(err, "", "warnings for the guide's variables");
    for (size_t i = 0; i < n; i++) {
        const char *key = NULL;
        for (size_t k = 0; k < NX_ARRAY_LEN(guide_vars); k++)
            if (strcmp(guide_vars[k].var, lines[i].name) == 0)
                key = guide_vars[k].key;
        cr_expect_not_null(key, "the guide's %s is not in the test's table", lines[i].name);
        if (!key)
            continue;
        char source[160];
        snprintf(source, sizeof(source), "environment %.95s", lines[i].name);
        expect_key(&cfg, key, lines[i].value, source);
    }
    /* a few, typed */
    cr_expect_str_eq(cfg.environment, "production");
    cr_expect_eq(cfg.debug, false);
    cr_expect_str_eq(cfg.host, "0.0.0.0");
    cr_expect_eq(cfg.port, 8000);
    cr_expect_eq(cfg.workers, 4);
    expect_key(&cfg, "app.name", "Nexus Production", NULL);
    expect_key(&cfg, "auth.jwt_secret", SECRET40, NULL);
    nx_config_free(&cfg);
}

/* The guide's Kubernetes ConfigMap, data.config.yaml, verbatim. */
static const char configmap_yaml[] = "app:\n"
                                     "  name: \"Nexus Application\"\n"
                                     "  environment: \"production\"\n"
                                     "  debug: false\n"
                                     "database:\n"
                                     "  host: \"postgres-service\"\n"
                                     "  port: 5432\n"
                                     "cache:\n"
                                     "  host: \"redis-service\"\n"
                                     "  port: 6379\n";

static void expect_configmap_values(const nx_config *cfg, const char *f)
{
    expect_key(cfg, "app.name", "Nexus Application", at(f, 2));
    expect_key(cfg, "app.debug", "false", at(f, 4));
    expect_key(cfg, "database.host", "postgres-service", at(f, 6));
    expect_key(cfg, "database.port", "5432", at(f, 7));
    expect_key(cfg, "cache.redis.host", "redis-service", at(f, 9));
    expect_key(cfg, "cache.redis.port", "6379", at(f, 10));
}

Test(config_file, guide_configmap_in_development, .init = setup_capture)
{
    const char *f = write_file("config.yaml", configmap_yaml);
    setenv("NEXUS_APP_ENVIRONMENT", "development", 1);
    nx_config cfg;
    cr_assert_eq(load(&cfg, (const char *const[]){"--config", f, NULL}), NX_OK, "%s",
                 take_stderr());
    expect_configmap_values(&cfg, f);
    expect_key(&cfg, "app.environment", "development", "environment NEXUS_APP_ENVIRONMENT");
    nx_config_free(&cfg);
    cr_expect_str_eq(take_stderr(), "");
}

/* As deployed: production, with the guide's secret variables (and NEXUS_CONFIG). */
Test(config_file, guide_configmap_in_production, .init = setup_capture)
{
    const char *f = write_file("config.yaml", configmap_yaml);
    setenv("NEXUS_CONFIG", f, 1);
    nx_config cfg;
    cr_expect_eq(load(&cfg, NULL), NX_ERR, "production without a JWT secret accepted");
    nx_config_free(&cfg);
    cr_expect(strstr(take_stderr(), "auth.jwt_secret is not set") != NULL);

    setenv("NEXUS_AUTH_JWT_SECRET", SECRET40, 1);
    setenv("NEXUS_DATABASE_PASSWORD", SECRET40, 1);
    cr_assert_eq(load(&cfg, NULL), NX_OK, "%s", take_stderr());
    expect_configmap_values(&cfg, f);
    cr_expect_str_eq(cfg.environment, "production");
    nx_config_free(&cfg);
    cr_expect_str_eq(take_stderr(), "");
}
