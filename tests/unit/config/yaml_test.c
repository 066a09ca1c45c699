/*
 * yaml_test.c - nx_yaml_load: a YAML file folded into (dotted key, value, line) entries.
 *
 * Each test writes its input to a fresh file made by mkstemp under /tmp, so nothing depends
 * on the working directory. Inputs are tables of (YAML text, expected entries) or
 * (YAML text, expected error fragments); an error must name the file and the line.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/yaml.h"

/* One file per test process (Criterion forks per test); removed by the fini. */
static char tmp_path[64];

static void remove_tmp(void)
{
    if (tmp_path[0])
        unlink(tmp_path);
    tmp_path[0] = '\0';
}

/* Writes text (len bytes) to a new temp file; returns its path. */
static const char *write_tmp_n(const char *text, size_t len)
{
    remove_tmp();
    snprintf(tmp_path, sizeof(tmp_path), "/tmp/nexus-yaml-ut-XXXXXX");
    int fd = mkstemp(tmp_path);
    cr_assert_geq(fd, 0, "mkstemp failed");
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
    return tmp_path;
}

static const char *write_tmp(const char *text)
{
    return write_tmp_n(text, strlen(text));
}

typedef struct want {
    const char *key;
    const char *value;
    int line;
    int is_map; /* an empty mapping: a section named with nothing in it */
} want;

/* Loads text and expects exactly the NULL-key-terminated entries, in order. */
static void expect_entries(const char *text, const want *w)
{
    const char *path = write_tmp(text);
    nx_yaml_doc doc;
    char err[512] = "";
    int rc = nx_yaml_load(path, &doc, err, sizeof(err));
    cr_assert_eq(rc, 0, "refused: %s\n--- input ---\n%s", err, text);
    size_t n = 0;
    while (w[n].key)
        n++;
    cr_expect_eq(doc.n, n, "%zu entries, expected %zu\n--- input ---\n%s", doc.n, n, text);
    for (size_t i = 0; i < n && i < doc.n; i++) {
        cr_expect_str_eq(doc.entries[i].key, w[i].key, "entry %zu\n--- input ---\n%s", i, text);
        cr_expect_str_eq(doc.entries[i].value, w[i].value, "entry %zu (%s)\n--- input ---\n%s", i,
                         w[i].key, text);
        cr_expect_eq(doc.entries[i].line, w[i].line, "entry %zu (%s): line %d, expected %d", i,
                     w[i].key, doc.entries[i].line, w[i].line);
        cr_expect_eq(doc.entries[i].is_map, w[i].is_map, "entry %zu (%s): is_map %d", i, w[i].key,
                     doc.entries[i].is_map);
    }
    nx_yaml_free(&doc);
    cr_expect_null(doc.entries);
    cr_expect_eq(doc.n, 0);
}

/* Loads text and expects failure, an empty doc, and "path:line" plus each fragment in err. */
static void expect_error(const char *text, int line, const char *const *fragments)
{
    const char *path = write_tmp(text);
    nx_yaml_doc doc;
    char err[512] = "";
    int rc = nx_yaml_load(path, &doc, err, sizeof(err));
    cr_expect_eq(rc, -1, "accepted\n--- input ---\n%s", text);
    if (rc == 0) {
        nx_yaml_free(&doc);
    } else {
        cr_expect_null(doc.entries, "entries left after an error");
        cr_expect_eq(doc.n, 0);
    }
    char where[96];
    snprintf(where, sizeof(where), "%s:%d: ", path, line);
    cr_expect(strstr(err, where) != NULL, "error '%s' lacks '%s'\n--- input ---\n%s", err, where,
              text);
    for (size_t i = 0; fragments && fragments[i]; i++)
        cr_expect(strstr(err, fragments[i]) != NULL, "error '%s' lacks '%s'", err, fragments[i]);
}

static void setup(void)
{
    unsetenv("NX_UT_A");
    unsetenv("NX_UT_B");
    unsetenv("NX_UT_UNSET");
    unsetenv("NX_UT_EMPTY");
}

TestSuite(yaml, .init = setup, .fini = remove_tmp);

/* ---- structure ------------------------------------------------------------------------- */

Test(yaml, nested_mappings_to_dotted_keys)
{
    static const want w[] = {
        {"app.name", "Nexus", 2},
        {"app.port", "8000", 3},
        {"cache.redis.host", "redis-service", 7},
        {"cache.redis.port", "6379", 8},
        {"cache.type", "redis", 9},
        {"logging.level", "info", 11},
        {NULL, NULL, 0},
    };
    expect_entries("app:\n"
                   "  name: Nexus\n"
                   "  port: 8000\n"
                   "\n"
                   "cache:\n"
                   "  redis:\n"
                   "    host: redis-service\n"
                   "    port: 6379\n"
                   "  type: redis\n"
                   "logging:\n"
                   "  level: info\n",
                   w);
}

Test(yaml, flow_mappings)
{
    static const want w[] = {
        {"app.name", "x", 1},
        {"app.port", "1", 1},
        {"cache.redis.host", "h", 2},
        {NULL, NULL, 0},
    };
    expect_entries("app: {name: x, port: 1}\n"
                   "cache: {redis: {host: h}}\n",
                   w);
}

/* Line numbers are the value's line, also with comments, blank lines and CRLF endings. */
Test(yaml, line_numbers)
{
    static const want w[] = {
        {"a.b", "1", 4},
        {"a.c", "2", 7},
        {NULL, NULL, 0},
    };
    expect_entries("# comment\n"
                   "a:\n"
                   "  # another\n"
                   "  b: 1\n"
                   "\n"
                   "\n"
                   "  c: 2   # trailing comment\n",
                   w);
    expect_entries("# comment\r\n"
                   "a:\r\n"
                   "  # another\r\n"
                   "  b: 1\r\n"
                   "\r\n"
                   "\r\n"
                   "  c: 2\r\n",
                   w);
}

Test(yaml, sequences_joined_with_commas)
{
    static const want w[] = {
        {"security.cors_origins", "https://a.example,https://b.example", 3},
        {"security.other", "x", 5},
        {"plugins.enabled", "hello,static", 7},
        {"plugins.none", "", 8},
        {"plugins.one", "only", 9},
        {"plugins.quoted", "a b,c", 10},
        {NULL, NULL, 0},
    };
    expect_entries("security:\n"
                   "  cors_origins:\n"
                   "    - https://a.example\n"
                   "    - https://b.example\n"
                   "  other: x\n"
                   "plugins:\n"
                   "  enabled: [hello, static]\n"
                   "  none: []\n"
                   "  one: [only]\n"
                   "  quoted: [\"a b\", 'c']\n",
                   w);
}

Test(yaml, scalar_styles)
{
    static const want w[] = {
        {"s.plain", "hello world", 2},
        {"s.double", "a: b # not a comment", 3},
        {"s.single", "it's", 4},
        {"s.escape", "tab\there", 5},
        {"s.number", "0123", 6},
        {"s.quoted_number", "8000", 7},
        {"s.bool", "true", 8},
        {"s.empty_quoted", "", 9},
        {"s.literal", "line1\nline2\n", 10},
        {"s.folded", "one two\n", 13},
        {"s.unicode", "caf\xc3\xa9", 16},
        {NULL, NULL, 0},
    };
    expect_entries("s:\n"
                   "  plain: hello world\n"
                   "  double: \"a: b # not a comment\"\n"
                   "  single: 'it''s'\n"
                   "  escape: \"tab\\there\"\n"
                   "  number: 0123\n"
                   "  quoted_number: \"8000\"\n"
                   "  bool: true\n"
                   "  empty_quoted: \"\"\n"
                   "  literal: |\n"
                   "    line1\n"
                   "    line2\n"
                   "  folded: >\n"
                   "    one\n"
                   "    two\n"
                   "  unicode: caf\xc3\xa9\n",
                   w);
}

/* Keys are never expanded or altered; a top-level key with a scalar is one entry. */
Test(yaml, top_level_scalar_value)
{
    static const want w[] = {
        {"top", "1", 1},
        {"${NX_UT_A}", "x", 2},
        {NULL, NULL, 0},
    };
    setenv("NX_UT_A", "expanded", 1);
    expect_entries("top: 1\n"
                   "${NX_UT_A}: x\n",
                   w);
}

/* An empty mapping still names its key (the schema decides whether it is a section). */
Test(yaml, empty_mapping_is_an_entry)
{
    static const want w[] = {
        {"cache", "", 1, 1},
        {"app.name", "x", 3, 0},
        {"database.pool", "", 4, 1},
        {NULL, NULL, 0, 0},
    };
    expect_entries("cache: {}\n"
                   "app:\n"
                   "  name: x\n"
                   "database: {pool: {}}\n",
                   w);
}

Test(yaml, empty_file)
{
    static const want w[] = {{NULL, NULL, 0}};
    expect_entries("", w);
}

Test(yaml, comment_only_file)
{
    static const want w[] = {{NULL, NULL, 0}};
    expect_entries("# nothing here\n"
                   "\n"
                   "   # indented comment\n",
                   w);
}

/* The deepest path allowed has 16 parts (16 open mappings). */
Test(yaml, depth_limit)
{
    char text[2048] = "";
    size_t len = 0;
    for (int d = 0; d < 16; d++)
        len += (size_t)snprintf(text + len, sizeof(text) - len, "%*sk%d:%s", d * 2, "", d,
                                d == 15 ? " v\n" : "\n");
    static const want w[] = {
        {"k0.k1.k2.k3.k4.k5.k6.k7.k8.k9.k10.k11.k12.k13.k14.k15", "v", 16},
        {NULL, NULL, 0},
    };
    expect_entries(text, w);

    /* one level more is refused, naming the line where the 17th mapping starts */
    len = 0;
    text[0] = '\0';
    for (int d = 0; d < 17; d++)
        len += (size_t)snprintf(text + len, sizeof(text) - len, "%*sk%d:%s", d * 2, "", d,
                                d == 16 ? " v\n" : "\n");
    static const char *const frag[] = {"nested deeper than 16 levels", NULL};
    expect_error(text, 17, frag);
}

/* ---- ${VAR} expansion ------------------------------------------------------------------- */

Test(yaml, expansion_set)
{
    setenv("NX_UT_A", "alpha", 1);
    setenv("NX_UT_B", "beta", 1);
    static const want w[] = {
        {"x.whole", "alpha", 2},
        {"x.embedded", "pre-alpha-beta-post", 3},
        {"x.quoted", "alpha", 4},
        {"x.default_ignored", "alpha", 5},
        {"x.list", "alpha,beta,gamma", 6},
        {"x.dollar", "$5 and $NX_UT_A and $ {NX_UT_A}", 7},
        {NULL, NULL, 0},
    };
    expect_entries("x:\n"
                   "  whole: ${NX_UT_A}\n"
                   "  embedded: pre-${NX_UT_A}-${NX_UT_B}-post\n"
                   "  quoted: \"${NX_UT_A}\"\n"
                   "  default_ignored: ${NX_UT_A:-fallback}\n"
                   "  list: [\"${NX_UT_A}\", \"${NX_UT_B}\", gamma]\n"
                   "  dollar: $5 and $NX_UT_A and $ {NX_UT_A}\n",
                   w);
}

/* An unset (or empty, as in the shell's :-) variable takes the default, which may be empty. */
Test(yaml, expansion_default)
{
    setenv("NX_UT_EMPTY", "", 1);
    static const want w[] = {
        {"db.host", "db.production.local", 2},
        {"db.url", "postgresql://localhost:5432/x", 3},
        {"db.empty_default", "", 4},
        {"db.set_but_empty", "dflt", 5},
        {"db.two", "a-b", 6},
        {NULL, NULL, 0},
    };
    expect_entries("db:\n"
                   "  host: \"${NX_UT_UNSET:-db.production.local}\"\n"
                   "  url: postgresql://${NX_UT_UNSET:-localhost}:${NX_UT_B:-5432}/x\n"
                   "  empty_default: \"${NX_UT_UNSET:-}\"\n"
                   "  set_but_empty: ${NX_UT_EMPTY:-dflt}\n"
                   "  two: ${NX_UT_UNSET:-a}-${NX_UT_B:-b}\n",
                   w);
}

Test(yaml, expansion_unset_without_default)
{
    static const char *const frag[] = {"${NX_UT_UNSET}", "not set", NULL};
    expect_error("app:\n"
                 "  name: ok\n"
                 "  host: \"${NX_UT_UNSET}\"\n",
                 3, frag);
}

Test(yaml, expansion_unset_inside_list)
{
    static const char *const frag[] = {"${NX_UT_UNSET}", NULL};
    expect_error("security:\n"
                 "  cors_origins:\n"
                 "    - https://a.example\n"
                 "    - ${NX_UT_UNSET}\n",
                 4, frag);
}

Test(yaml, expansion_malformed_empty_name)
{
    static const char *const frag[] = {"malformed", NULL};
    expect_error("a:\n  b: x${}y\n", 2, frag);
    expect_error("a:\n  b: ${:-dflt}\n", 2, frag);
}

Test(yaml, expansion_malformed_long_name)
{
    char text[512];
    char name[301];
    memset(name, 'V', 300);
    name[300] = '\0';
    snprintf(text, sizeof(text), "a:\n  b: ${%s}\n", name);
    static const char *const frag[] = {"malformed", NULL};
    expect_error(text, 2, frag);
}

/* "${NAME" without its brace is a typo, not text to pass on: it must be refused. */
Test(yaml, expansion_malformed_unclosed)
{
    static const char *const frag[] = {"${", NULL};
    expect_error("database:\n  host: \"${NX_UT_A\"\n", 2, frag);
    expect_error("database:\n  host: ${NX_UT_A:-localhost\n", 2, frag);
}

/* ---- refused shapes --------------------------------------------------------------------- */

Test(yaml, syntax_error_names_line)
{
    static const char *const frag[] = {"invalid YAML", NULL};
    expect_error("app:\n"
                 "  name: x\n"
                 "  port: 1\n"
                 " bad: y\n",
                 4, frag);
    /* an unclosed flow list is found where the next key begins */
    expect_error("app:\n"
                 "  name: [a, b\n"
                 "logging:\n"
                 "  level: info\n",
                 3, frag);
    expect_error("app:\n"
                 "  name: x\n"
                 "x: }\n",
                 3, frag);
    expect_error("app:\n"
                 "\tname: tab\n",
                 2, frag);
}

Test(yaml, unreadable_file)
{
    nx_yaml_doc doc;
    char err[512] = "";
    cr_expect_eq(nx_yaml_load("/nonexistent/nexus/config.yaml", &doc, err, sizeof(err)), -1);
    cr_expect(strstr(err, "/nonexistent/nexus/config.yaml") != NULL, "%s", err);
    cr_expect(strstr(err, "No such file") != NULL, "%s", err);
    cr_expect_eq(doc.n, 0);
    cr_expect_null(doc.entries);
}

Test(yaml, alias_refused)
{
    static const char *const frag[] = {"aliases", NULL};
    /* refused at the anchor, before any alias can use it */
    expect_error("app:\n"
                 "  name: &n Nexus\n"
                 "  other: *n\n",
                 2, frag);
    /* a merge key is an alias too */
    expect_error("base: &b {port: 1}\n"
                 "app:\n"
                 "  <<: *b\n",
                 1, frag);
}

/* "billion laughs": refused at the first alias, before anything is expanded. */
Test(yaml, alias_bomb_refused)
{
    static const char *const frag[] = {"aliases", NULL};
    expect_error("a: &a [x, x, x, x, x, x, x, x, x]\n"
                 "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                 "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n",
                 1, frag);
}

/* yaml.c's own comment: "Aliases and anchors are refused". An anchor alone is refused too. */
Test(yaml, anchor_refused)
{
    static const char *const frag[] = {"anchor", NULL};
    expect_error("app:\n"
                 "  name: &n Nexus\n",
                 2, frag);
}

Test(yaml, top_level_scalar_refused)
{
    static const char *const frag[] = {"must be a mapping", NULL};
    expect_error("just a string\n", 1, frag);
    expect_error("# comment\n42\n", 2, frag);
}

Test(yaml, top_level_list_refused)
{
    static const char *const frag[] = {"list", NULL};
    expect_error("- a\n- b\n", 1, frag);
    expect_error("\n[a, b]\n", 2, frag);
}

Test(yaml, list_of_mappings_refused)
{
    static const char *const frag[] = {"a list may only hold plain values", NULL};
    expect_error("plugins:\n"
                 "  enabled:\n"
                 "    - name: hello\n"
                 "      strict: true\n",
                 3, frag);
    expect_error("plugins:\n"
                 "  enabled: [a, {name: b}]\n",
                 2, frag);
}

Test(yaml, nested_list_refused)
{
    static const char *const frag[] = {"list", NULL};
    expect_error("plugins:\n"
                 "  enabled:\n"
                 "    - a\n"
                 "    - [b, c]\n",
                 4, frag);
}

Test(yaml, complex_key_refused)
{
    static const char *const frag[] = {"a key must be a plain value", NULL};
    expect_error("app:\n"
                 "  ? {a: 1}\n"
                 "  : x\n",
                 2, frag);
    static const char *const frag2[] = {"list", NULL};
    expect_error("app:\n"
                 "  ? [a, b]\n"
                 "  : x\n",
                 2, frag2);
}

/* A key given twice in one mapping is refused at the second, naming the first. */
Test(yaml, duplicate_key_refused)
{
    static const char *const port[] = {"app.port is given twice (first on line 2)", NULL};
    expect_error("app:\n"
                 "  port: 8000\n"
                 "  workers: 2\n"
                 "  port: 9000\n",
                 4, port);
    static const char *const section[] = {"server is given twice (first on line 1)", NULL};
    expect_error("server:\n"
                 "  keepalive_timeout: 5s\n"
                 "app:\n"
                 "  port: 1\n"
                 "server:\n"
                 "  graceful_timeout: 9s\n",
                 5, section);
    static const char *const flow[] = {"plugins.todo.page_size is given twice", NULL};
    expect_error("plugins:\n"
                 "  todo: {page_size: 10, page_size: 20}\n",
                 2, flow);
    static const char *const list[] = {"plugins.enabled is given twice", NULL};
    expect_error("plugins:\n"
                 "  enabled: [a]\n"
                 "  enabled:\n"
                 "    - b\n",
                 3, list);
}

/* The same name in different mappings, or in a mapping closed and another opened, is fine. */
Test(yaml, same_key_in_different_mappings)
{
    static const want w[] = {{"app.port", "1", 2, 0},
                             {"cache.port", "2", 4, 0},
                             {"plugins.a.port", "3", 7, 0},
                             {"plugins.b.port", "4", 9, 0},
                             {NULL, NULL, 0, 0}};
    expect_entries("app:\n"
                   "  port: 1\n"
                   "cache:\n"
                   "  port: 2\n"
                   "plugins:\n"
                   "  a:\n"
                   "    port: 3\n"
                   "  b:\n"
                   "    port: 4\n",
                   w);
}

/* The error text is cut to errlen and stays a terminated string. */
Test(yaml, error_truncated_to_buffer)
{
    const char *path = write_tmp("a:\n  b: ${NX_UT_UNSET}\n");
    nx_yaml_doc doc;
    char err[16];
    memset(err, 'Z', sizeof(err));
    cr_expect_eq(nx_yaml_load(path, &doc, err, sizeof(err)), -1);
    cr_expect_eq(strnlen(err, sizeof(err)), sizeof(err) - 1);
    cr_expect_eq(strncmp(err, path, sizeof(err) - 1), 0, "'%s'", err);
}

/* A file with a NUL byte or invalid UTF-8 is a YAML error, not a crash or a silent cut. */
Test(yaml, invalid_bytes_refused)
{
    static const char bad_utf8[] = "app:\n  name: \xff\xfe\n";
    const char *path = write_tmp_n(bad_utf8, sizeof(bad_utf8) - 1);
    nx_yaml_doc doc;
    char err[512] = "";
    cr_expect_eq(nx_yaml_load(path, &doc, err, sizeof(err)), -1);
    cr_expect(strstr(err, "invalid YAML") != NULL, "'%s'", err);
    cr_expect(strstr(err, path) != NULL, "'%s'", err);
}

/* Loading twice into the same doc after a free gives the same entries (no state kept). */
Test(yaml, reload_same_doc)
{
    const char *path = write_tmp("a:\n  b: 1\n  c: [x, y]\n");
    nx_yaml_doc doc;
    char err[512] = "";
    for (int round = 0; round < 3; round++) {
        cr_assert_eq(nx_yaml_load(path, &doc, err, sizeof(err)), 0, "%s", err);
        cr_expect_eq(doc.n, 2);
        cr_expect_str_eq(doc.entries[1].key, "a.c");
        cr_expect_str_eq(doc.entries[1].value, "x,y");
        nx_yaml_free(&doc);
    }
}

/* A plain null (nothing, "~", "null") is reported as null (is_map 2): it leaves the key at
 * its default, which is how a section with every key commented out must behave. */
Test(yaml, plain_nulls_are_null)
{
    char path[] = "/tmp/nexus-yaml-null-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    const char *text = "a:\n  empty:\n  tilde: ~\n  word: null\n  quoted: \"null\"\nb:\n";
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    nx_yaml_doc doc;
    char err[256];
    int rc = nx_yaml_load(path, &doc, err, sizeof(err));
    unlink(path);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(doc.n, 5);
    static const char *const keys[] = {"a.empty", "a.tilde", "a.word", "a.quoted", "b"};
    static const int kinds[] = {2, 2, 2, 0, 2};
    for (size_t i = 0; i < 5; i++) {
        cr_expect_str_eq(doc.entries[i].key, keys[i]);
        cr_expect_eq(doc.entries[i].is_map, kinds[i], "%s", keys[i]);
    }
    cr_expect_str_eq(doc.entries[3].value, "null"); /* quoted: a string, not a null */
    nx_yaml_free(&doc);
}
