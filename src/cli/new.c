/*
 * new.c - `nexus new plugin NAME [--dir PATH]`: a plugin project that builds out of tree.
 *
 * The project is a folder with the plugin's source, a Makefile that builds it against an
 * installed Nexus through `pkg-config nexus`, a bash + curl test that runs it in a real
 * server, and a README. The templates are embedded below so that an installed binary needs
 * no data files; in them @NAME@ stands for the plugin's name and @UPPER@ for the name
 * upper-cased, as it appears in the variables of the plugin's settings.
 *
 * Nothing is ever overwritten: the target folder must be absent or empty, files are created
 * with O_EXCL, and a failure half-way removes what this run created.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/util.h"

/* sysexits.h: a bad command line, and an output that cannot be created. */
#define EX_USAGE_STATUS 64
#define EX_CANTCREAT_STATUS 73

/* A plugin name: [a-z][a-z0-9_]{0,62}. It is also a file name, a route and a C prefix. */
#define PLUGIN_NAME_MAX 63

/* ---- templates --------------------------------------------------------------------- */

static const char tmpl_source[] =
    "/*\n"
    " * @NAME@ - a Nexus plugin, made by `nexus new plugin @NAME@`.\n"
    " *\n"
    " *   GET /@NAME@\n"
    " *       200 {\"plugin\":\"@NAME@\",\"message\":<the greeting setting>}\n"
    " *   GET /@NAME@/items/{id:int}\n"
    " *       200 {\"id\":<id>,\"name\":\"item <id>\"} for ids 1..ITEMS_MAX\n"
    " *       404 problem+json for any other id\n"
    " *       400 problem+json for an id beyond the range of int64\n"
    " *\n"
    " * Setting: plugins.@NAME@.greeting in the YAML file, or NEXUS_PLUGINS_@UPPER@_GREETING.\n"
    " *\n"
    " * The server calls @NAME@_init once, in the master process, before it forks its workers;\n"
    " * the handlers then run in every worker, each request on its own coroutine. A handler may\n"
    " * wait (nx_sleep_ms, and the database and cache calls) without holding up other requests,\n"
    " * so it is written straight, top to bottom, with no callbacks.\n"
    " */\n"
    "#include <nexus/nexus.h>\n"
    "\n"
    "#include <jansson.h>\n"
    "#include <stdint.h>\n"
    "\n"
    "/* The ids this example knows; a real plugin would look its items up in a store. */\n"
    "#define ITEMS_MAX 1000\n"
    "\n"
    "/*\n"
    " * Settings, checked by type before init runs: a value of the wrong type, or a key under\n"
    " * plugins.@NAME@ that is not declared here, stops start-up naming the file:line or the\n"
    " * variable. Designated initializers leave the other fields (.secret) zero without a\n"
    " * -Wextra warning; the array ends with an entry without a name.\n"
    " */\n"
    "static const nx_plugin_setting settings[] = {\n"
    "    {.name = \"greeting\",\n"
    "     .type = NX_SETTING_STR,\n"
    "     .def = \"Hello from @NAME@\",\n"
    "     .help = \"the message of GET /@NAME@\"},\n"
    "    {.name = NULL},\n"
    "};\n"
    "\n"
    "/*\n"
    " * The handle init receives, kept for the handlers. init runs before the workers are\n"
    " * forked, so every worker inherits it; nothing writes to it afterwards.\n"
    " */\n"
    "static nx_plugin *self;\n"
    "\n"
    "/*\n"
    " * GET /@NAME@. nx_json sends a jansson document and steals its reference, so json_pack's\n"
    " * result goes straight in and nothing leaks (a NULL from json_pack becomes a 500).\n"
    " */\n"
    "static void index_handler(nx_req *req, nx_res *res)\n"
    "{\n"
    "    (void)req;\n"
    "    nx_json(res, 200,\n"
    "            json_pack(\"{s:s, s:s}\", \"plugin\", nx_plugin_name(self), \"message\",\n"
    "                      nx_plugin_config(self, \"greeting\")));\n"
    "}\n"
    "\n"
    "/*\n"
    " * GET /@NAME@/items/{id:int}. The router matches only a decimal integer here, so \"abc\"\n"
    " * never arrives (the client gets a 404), but 19 digits beyond the range of int64 do, which\n"
    " * is why the conversion is checked. Errors go out as nx_problem: an RFC 9457\n"
    " * application/problem+json body that carries the request id.\n"
    " */\n"
    "static void item_handler(nx_req *req, nx_res *res)\n"
    "{\n"
    "    int64_t id;\n"
    "    if (!nx_req_param_i64(req, \"id\", &id)) {\n"
    "        nx_problem(res, 400, \"id must be an integer between 1 and %d\", ITEMS_MAX);\n"
    "        return;\n"
    "    }\n"
    "    if (id < 1 || id > ITEMS_MAX) {\n"
    "        nx_problem(res, 404, \"no item %lld\", (long long)id);\n"
    "        return;\n"
    "    }\n"
    "    /* In the request's arena: released in one step after the response, never freed here. *"
    "/\n"
    "    const char *name = nx_arena_printf(nx_req_arena(req), \"item %lld\", (long long)id);\n"
    "    nx_json(res, 200, json_pack(\"{s:I, s:s}\", \"id\", (json_int_t)id, \"name\", name));\n"
    "}\n"
    "\n"
    "/*\n"
    " * Checks the settings and registers the routes. Returning non-zero stops the server from\n"
    " * starting: say why first (nx_route logs its own errors), since the loader only reports\n"
    " * that init failed.\n"
    " */\n"
    "static int @NAME@_init(nx_plugin *p)\n"
    "{\n"
    "    self = p;\n"
    "    if (!*nx_plugin_config(p, \"greeting\")) {\n"
    "        nx_log_error(\"@NAME@: plugins.@NAME@.greeting must not be empty\");\n"
    "        return -1;\n"
    "    }\n"
    "    if (nx_route(p, \"GET\", \"/@NAME@\", index_handler, NX_ROUTE_DEFAULT) != NX_OK)\n"
    "        return -1;\n"
    "    if (nx_route(p, \"GET\", \"/@NAME@/items/{id:int}\", item_handler, NX_ROUTE_DEFAULT) !="
    " NX_OK)\n"
    "        return -1;\n"
    "    return 0;\n"
    "}\n"
    "\n"
    "/*\n"
    " * The descriptor the server reads before running any of this code: name, version, init,\n"
    " * fini (NULL: this plugin holds nothing to release) and the settings.\n"
    " */\n"
    "NEXUS_PLUGIN_WITH_SETTINGS(\"@NAME@\", \"0.1.0\", @NAME@_init, NULL, settings);\n";

static const char tmpl_makefile[] =
    "# @NAME@ - a Nexus plugin, built outside Nexus's tree against an installed Nexus.\n"
    "#\n"
    "#   make          builds @NAME@.so\n"
    "#   make run      serves this plugin and the bundled ones on http://127.0.0.1:$(PORT)\n"
    "#   make test     builds, then runs test_@NAME@.sh (a server on a free port, the routes che"
    "cked)\n"
    "#   make clean\n"
    "#\n"
    "# Headers and flags come from pkg-config (nexus.pc, installed by Nexus's `make install`).\n"
    "# For a Nexus installed under another PREFIX than /usr or /usr/local:\n"
    "#   export PKG_CONFIG_PATH=PREFIX/lib/pkgconfig\n"
    "\n"
    "PKG_CONFIG ?= pkg-config\n"
    "CFLAGS     ?= -O2 -g\n"
    "WARN       := -Wall -Wextra -Werror\n"
    "PORT       ?= 8000\n"
    "\n"
    "NEXUS_CFLAGS := $(shell $(PKG_CONFIG) --cflags nexus 2>/dev/null)\n"
    "NEXUS_LIBS   := $(shell $(PKG_CONFIG) --libs nexus 2>/dev/null)\n"
    "NEXUS_INC    := $(shell $(PKG_CONFIG) --variable=includedir nexus 2>/dev/null)\n"
    "PLUGINDIR    := $(shell $(PKG_CONFIG) --variable=plugindir nexus 2>/dev/null)\n"
    "NEXUS_PREFIX := $(shell $(PKG_CONFIG) --variable=prefix nexus 2>/dev/null)\n"
    "\n"
    "# The nexus binary of the installation whose headers we build against, else the one on PATH"
    ".\n"
    "NEXUS ?= $(or $(if $(NEXUS_PREFIX),$(wildcard $(NEXUS_PREFIX)/bin/nexus)),nexus)\n"
    "\n"
    ".PHONY: all run test clean\n"
    "\n"
    "all: @NAME@.so\n"
    "\n"
    "# A plugin links against nothing of Nexus: the nx_* functions are resolved from the nexus\n"
    "# executable when it loads the plugin. Rebuilt when the installed headers change (a new ABI"
    ").\n"
    "@NAME@.so: @NAME@.c $(wildcard $(NEXUS_INC)/nexus/*.h)\n"
    "\t@$(PKG_CONFIG) --exists nexus || { echo \"pkg-config cannot find nexus.pc: install Nexus "
    "\\\n"
    "\t(make install PREFIX=...) and set PKG_CONFIG_PATH=PREFIX/lib/pkgconfig\" >&2; exit 1; }\n"
    "\t$(CC) -std=c11 $(WARN) $(CFLAGS) $(CPPFLAGS) $(NEXUS_CFLAGS) -fPIC -shared -o $@ $< \\\n"
    "\t    $(LDFLAGS) $(NEXUS_LIBS)\n"
    "\n"
    "# This folder first, then the bundled plugins of the installation (when there are any).\n"
    "run: @NAME@.so\n"
    "\t$(NEXUS) serve --port $(PORT) --plugins-dir .$(if $(wildcard $(PLUGINDIR)),:$(PLUGINDIR))\n"
    "\n"
    "test: @NAME@.so\n"
    "\tNEXUS=\"$(NEXUS)\" bash ./test_@NAME@.sh\n"
    "\n"
    "clean:\n"
    "\trm -f @NAME@.so\n";

static const char tmpl_test[] =
    "#!/usr/bin/env bash\n"
    "# test_@NAME@.sh - starts nexus with this folder's plugin on a free loopback port, calls\n"
    "# the routes, checks the answers, and stops the server. Exits non-zero on any failure.\n"
    "# Needs bash and curl. `make test` runs it after building @NAME@.so.\n"
    "#\n"
    "#   NEXUS=/path/to/nexus ./test_@NAME@.sh     (default: nexus on PATH)\n"
    "set -u\n"
    "cd \"$(dirname \"$0\")\" || exit 1\n"
    "\n"
    "NEXUS=${NEXUS:-nexus}\n"
    "GREETING=\"hello from test_@NAME@\"\n"
    "LOG=$(mktemp)\n"
    "PID=\n"
    "PORT=\n"
    "failures=0\n"
    "\n"
    "die() {\n"
    "    echo \"test_@NAME@: $*\" >&2\n"
    "    exit 1\n"
    "}\n"
    "\n"
    "stop() {\n"
    "    [ -n \"$PID\" ] || return 0\n"
    "    kill -TERM \"$PID\" 2>/dev/null\n"
    "    wait \"$PID\"\n"
    "    local rc=$?\n"
    "    PID=\n"
    "    return $rc\n"
    "}\n"
    "\n"
    "cleanup() {\n"
    "    stop\n"
    "    rm -f \"$LOG\" \"$LOG.body\"\n"
    "}\n"
    "trap cleanup EXIT\n"
    "\n"
    "# The caller's NEXUS_* settings (a config file, another plugin's values) stay out of this.\n"
    "for var in $(compgen -e); do\n"
    "    case $var in NEXUS_*) unset \"$var\" ;; esac\n"
    "done\n"
    "\n"
    "[ -f ./@NAME@.so ] || die \"@NAME@.so is not built (run make)\"\n"
    "command -v curl >/dev/null || die \"curl is needed\"\n"
    "command -v \"$NEXUS\" >/dev/null || die \"no nexus binary '$NEXUS' (set NEXUS= or PATH)\"\n"
    "\n"
    "# True when nothing accepts connections on 127.0.0.1:$1.\n"
    "port_free() {\n"
    "    ! (exec 3<>\"/dev/tcp/127.0.0.1/$1\") 2>/dev/null\n"
    "}\n"
    "\n"
    "# Starts the server on a free port and waits for /health; a port taken between the check\n"
    "# and the bind makes the server exit, and another port is tried.\n"
    "start() {\n"
    "    for _ in 1 2 3 4 5; do\n"
    "        PORT=$((20000 + RANDOM % 30000))\n"
    "        port_free \"$PORT\" || continue\n"
    "        NEXUS_PLUGINS_@UPPER@_GREETING=\"$GREETING\" \\\n"
    "            \"$NEXUS\" serve --host 127.0.0.1 --port \"$PORT\" --workers 1 --access-log off"
    " \\\n"
    "            --plugins-dir . >\"$LOG\" 2>&1 &\n"
    "        PID=$!\n"
    "        for _ in $(seq 100); do\n"
    "            if curl -fsS -o /dev/null --max-time 1 \"http://127.0.0.1:$PORT/health\" 2>/dev"
    "/null\n"
    "            then\n"
    "                return 0\n"
    "            fi\n"
    "            kill -0 \"$PID\" 2>/dev/null || break\n"
    "            sleep 0.1\n"
    "        done\n"
    "        stop\n"
    "    done\n"
    "    echo \"test_@NAME@: the server did not become healthy; its log:\" >&2\n"
    "    cat \"$LOG\" >&2\n"
    "    return 1\n"
    "}\n"
    "\n"
    "# check PATH STATUS CONTENT_TYPE TEXT...: GET PATH answers STATUS with CONTENT_TYPE, and\n"
    "# its body contains every TEXT.\n"
    "check() {\n"
    "    local path=$1 want_status=$2 want_type=$3 got status ctype body text\n"
    "    shift 3\n"
    "    got=$(curl -sS --max-time 5 -o \"$LOG.body\" -w '%{http_code} %{content_type}' \\\n"
    "        \"http://127.0.0.1:$PORT$path\") || {\n"
    "        echo \"FAIL GET $path: curl failed\" >&2\n"
    "        failures=$((failures + 1))\n"
    "        return\n"
    "    }\n"
    "    status=${got%% *}\n"
    "    ctype=${got#* }\n"
    "    ctype=${ctype%%;*}\n"
    "    body=$(cat \"$LOG.body\")\n"
    "    local ok=1\n"
    "    [ \"$status\" = \"$want_status\" ] && [ \"$ctype\" = \"$want_type\" ] || ok=0\n"
    "    for text in \"$@\"; do\n"
    "        [[ \"$body\" == *\"$text\"* ]] || ok=0\n"
    "    done\n"
    "    if [ $ok = 1 ]; then\n"
    "        echo \"ok   GET $path -> $status $ctype\"\n"
    "    else\n"
    "        echo \"FAIL GET $path -> $status $ctype $body\" >&2\n"
    "        echo \"     expected $want_status $want_type with: $*\" >&2\n"
    "        failures=$((failures + 1))\n"
    "    fi\n"
    "}\n"
    "\n"
    "start || exit 1\n"
    "\n"
    "# The setting, from its variable; the typed parameter and each of its errors.\n"
    "check \"/@NAME@\" 200 application/json '\"plugin\":\"@NAME@\"' \"\\\"message\\\":\\\"$GREET"
    "ING\\\"\"\n"
    "check \"/@NAME@/items/42\" 200 application/json '\"id\":42' '\"name\":\"item 42\"'\n"
    "check \"/@NAME@/items/0\" 404 application/problem+json '\"status\":404' 'no item 0'\n"
    "check \"/@NAME@/items/1001\" 404 application/problem+json '\"status\":404' 'no item 1001'\n"
    "check \"/@NAME@/items/9999999999999999999\" 400 application/problem+json '\"status\":400'\n"
    "check \"/@NAME@/items/abc\" 404 application/problem+json '\"status\":404'\n"
    "\n"
    "stop || {\n"
    "    echo \"FAIL the server did not exit 0 on SIGTERM; its log:\" >&2\n"
    "    cat \"$LOG\" >&2\n"
    "    failures=$((failures + 1))\n"
    "}\n"
    "\n"
    "if [ \"$failures\" -ne 0 ]; then\n"
    "    echo \"test_@NAME@: $failures check(s) failed; the server's log:\" >&2\n"
    "    cat \"$LOG\" >&2\n"
    "    exit 1\n"
    "fi\n"
    "echo \"test_@NAME@: all checks passed\"\n";

static const char tmpl_readme[] =
    "# @NAME@\n"
    "\n"
    "A Nexus plugin, made by `nexus new plugin @NAME@`.\n"
    "\n"
    "| route | answer |\n"
    "| --- | --- |\n"
    "| `GET /@NAME@` | `200 {\"plugin\":\"@NAME@\",\"message\":\"Hello from @NAME@\"}` |\n"
    "| `GET /@NAME@/items/{id:int}` | `200 {\"id\":42,\"name\":\"item 42\"}` for ids 1..1000, el"
    "se a `404` problem; `400` for an id beyond 64 bits |\n"
    "\n"
    "## Build, run, test\n"
    "\n"
    "It builds against an installed Nexus through `pkg-config nexus` (Nexus's `make install`\n"
    "puts the headers and `nexus.pc` in place). For a Nexus installed under a PREFIX other than\n"
    "`/usr` or `/usr/local`, first `export PKG_CONFIG_PATH=PREFIX/lib/pkgconfig`.\n"
    "\n"
    "```sh\n"
    "make          # @NAME@.so (-Wall -Wextra -Werror)\n"
    "make test     # starts nexus with @NAME@.so on a free port, calls the routes (bash + curl)\n"
    "make run      # serves @NAME@.so and the bundled plugins on http://127.0.0.1:8000\n"
    "curl http://127.0.0.1:8000/@NAME@\n"
    "curl http://127.0.0.1:8000/@NAME@/items/42\n"
    "```\n"
    "\n"
    "`make run PORT=9000` picks another port; `make NEXUS=/path/to/nexus run` another binary\n"
    "(by default the one installed beside the headers, else `nexus` on `PATH`).\n"
    "\n"
    "## Settings\n"
    "\n"
    "| key | variable | type | default |\n"
    "| --- | --- | --- | --- |\n"
    "| `plugins.@NAME@.greeting` | `NEXUS_PLUGINS_@UPPER@_GREETING` | string | `Hello from @NAME"
    "@` |\n"
    "\n"
    "In the server's YAML file:\n"
    "\n"
    "```yaml\n"
    "plugins:\n"
    "  @NAME@:\n"
    "    greeting: \"Hi there\"\n"
    "```\n"
    "\n"
    "The server checks settings by type before `@NAME@_init` runs; a key under\n"
    "`plugins.@NAME@` that the plugin does not declare stops start-up with its file and line.\n"
    "\n"
    "## Deploying\n"
    "\n"
    "Copy `@NAME@.so` into the server's plugins folder (`plugins.dir`, `--plugins-dir`;\n"
    "`/app/plugins` in the container) and start or reload the server. The plugin must be built\n"
    "against the headers of the Nexus that loads it: a server with another plugin ABI refuses\n"
    "it at load, naming the file.\n"
    "\n"
    "## Where to go from here\n"
    "\n"
    "- `@NAME@.c` is commented as a model: routes, a typed path parameter, problem+json errors,\n"
    "  a setting, and the request's arena.\n"
    "- The API is in the installed headers, `$(pkg-config --variable=includedir nexus)/nexus/`,\n"
    "  one header per subsystem behind `nexus/nexus.h`.\n"
    "- A plugin's name is unique in a server, and so is each route: a plugin named like a\n"
    "  bundled one, or claiming a route another plugin has, stops start-up with both named.\n";

static const char tmpl_gitignore[] = "*.so\n";

/* ---- the command ------------------------------------------------------------------- */

static const struct {
    const char *file; /* @NAME@ expanded, as in the templates */
    const char *tmpl;
    mode_t mode;
    const char *what;
} files[] = {
    {"@NAME@.c", tmpl_source, 0644,
     "the plugin: GET /@NAME@, GET /@NAME@/items/{id:int}, a setting"},
    {"Makefile", tmpl_makefile, 0644, "make, make run, make test, make clean (pkg-config nexus)"},
    {"test_@NAME@.sh", tmpl_test, 0755, "starts nexus on a free port and checks the routes"},
    {"README.md", tmpl_readme, 0644, "routes, settings, building and deploying"},
    {".gitignore", tmpl_gitignore, 0644, "leaves the built @NAME@.so out of git"},
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: nexus new plugin NAME [--dir PATH]\n"
            "\n"
            "Creates a plugin project in ./NAME (or PATH): NAME.c, a Makefile that builds\n"
            "NAME.so against the installed Nexus through pkg-config, test_NAME.sh and a README.\n"
            "\n"
            "  NAME        a lowercase letter, then lowercase letters, digits or '_' (at most\n"
            "              %d characters); also the plugin's route /NAME\n"
            "  --dir PATH  create the project in PATH instead of ./NAME; PATH must be absent\n"
            "              or an empty folder, and its parent must exist\n",
            PLUGIN_NAME_MAX);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "nexus new: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n\n");
    va_end(ap);
    usage(stderr);
    return EX_USAGE_STATUS;
}

/* Checks name against [a-z][a-z0-9_]{0,62}; on failure writes the reason to why. */
static bool name_is_valid(const char *name, char *why, size_t len)
{
    size_t n = strlen(name);
    if (n == 0) {
        snprintf(why, len, "the name is empty");
        return false;
    }
    if (n > PLUGIN_NAME_MAX) {
        snprintf(why, len, "the name has %zu characters, at most %d are allowed", n,
                 PLUGIN_NAME_MAX);
        return false;
    }
    if (name[0] < 'a' || name[0] > 'z') {
        snprintf(why, len, "the name must start with a lowercase letter (a-z)");
        return false;
    }
    for (size_t i = 1; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
            snprintf(why, len,
                     "character %zu ('%c') is not allowed: use lowercase letters, digits and '_'",
                     i + 1, c >= 0x20 && c < 0x7f ? c : '?');
            return false;
        }
    }
    /* The server answers these paths itself; a plugin route there would clash at start. */
    if (strcmp(name, "health") == 0 || strcmp(name, "ready") == 0) {
        snprintf(why, len, "/%s is a route of the server itself", name);
        return false;
    }
    return true;
}

/* Writes tmpl to f with @NAME@ and @UPPER@ replaced. */
static void write_expanded(FILE *f, const char *tmpl, const char *name, const char *upper)
{
    const char *p = tmpl;
    const char *at;
    while ((at = strchr(p, '@')) != NULL) {
        fwrite(p, 1, (size_t)(at - p), f);
        if (strncmp(at, "@NAME@", 6) == 0) {
            fputs(name, f);
            p = at + 6;
        } else if (strncmp(at, "@UPPER@", 7) == 0) {
            fputs(upper, f);
            p = at + 7;
        } else {
            fputc('@', f);
            p = at + 1;
        }
    }
    fputs(p, f);
}

/* file with @NAME@ expanded, in out. */
static void expand_name(const char *file, const char *name, char *out, size_t len)
{
    size_t n = 0;
    out[0] = '\0';
    for (const char *p = file; *p && n + 1 < len;) {
        if (strncmp(p, "@NAME@", 6) == 0) {
            n += (size_t)snprintf(out + n, len - n, "%s", name);
            p += 6;
        } else {
            out[n++] = *p++;
            out[n] = '\0';
        }
    }
}

enum { DIR_ABSENT, DIR_EMPTY, DIR_NOT_EMPTY, DIR_NOT_A_DIR, DIR_ERROR };

static int dir_state(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return errno == ENOENT ? DIR_ABSENT : DIR_ERROR;
    if (!S_ISDIR(st.st_mode))
        return DIR_NOT_A_DIR;
    DIR *d = opendir(path);
    if (!d)
        return DIR_ERROR;
    int state = DIR_EMPTY;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            state = DIR_NOT_EMPTY;
            break;
        }
    }
    closedir(d);
    return state;
}

/*
 * Creates path (which must not exist) with the expanded template: 0, or -1 with errno set
 * and no file left behind.
 */
static int write_file(const char *path, mode_t mode, const char *tmpl, const char *name,
                      const char *upper)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        int e = errno;
        close(fd);
        unlink(path);
        errno = e;
        return -1;
    }
    write_expanded(f, tmpl, name, upper);
    int failed = ferror(f);
    int e = errno;
    if (fclose(f) != 0 && !failed) {
        failed = 1;
        e = errno;
    }
    if (failed) {
        unlink(path);
        errno = e ? e : EIO;
        return -1;
    }
    return 0;
}

/* A path as a shell word: as is when it is plain, else in single quotes. */
static void print_shell_word(const char *s)
{
    static const char plain[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                "0123456789_-./+:,=@";
    if (*s && strspn(s, plain) == strlen(s)) {
        fputs(s, stdout);
        return;
    }
    putchar('\'');
    for (const char *p = s; *p; p++) {
        if (*p == '\'')
            fputs("'\\''", stdout);
        else
            putchar(*p);
    }
    putchar('\'');
}

/*
 * How the project will find Nexus: when this binary is an installed one (PREFIX/bin/nexus
 * beside PREFIX/lib/pkgconfig/nexus.pc) under a PREFIX pkg-config does not search, the
 * variable to set; when it is not installed at all (a build tree), that it needs to be.
 */
static void print_pkg_config_hint(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return;
    *slash = '\0';
    char up[PATH_MAX + 4], prefix[PATH_MAX], pc[PATH_MAX + 32];
    snprintf(up, sizeof(up), "%s/..", exe);
    if (!realpath(up, prefix))
        return;
    snprintf(pc, sizeof(pc), "%s/lib/pkgconfig/nexus.pc", prefix);
    if (access(pc, R_OK) != 0) {
        printf("\nnote: this nexus (%s/nexus) is not an installed one, and the project builds\n"
               "against an installed Nexus: run `make install PREFIX=...` in Nexus's tree, and\n"
               "export PKG_CONFIG_PATH=PREFIX/lib/pkgconfig unless PREFIX is /usr or /usr/local\n",
               exe);
        return;
    }
    if (strcmp(prefix, "/usr") == 0 || strcmp(prefix, "/usr/local") == 0)
        return;
    printf("\npkg-config looks for nexus.pc in /usr and /usr/local only; for this installation:\n"
           "  export PKG_CONFIG_PATH=");
    print_shell_word(prefix);
    printf("/lib/pkgconfig\n");
}

int nx_cmd_new(int argc, char **argv)
{
    const char *kind = NULL, *name = NULL, *dir = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (nx_cli_is_help(a)) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--dir") == 0) {
            if (i + 1 >= argc)
                return usage_error("%s needs a PATH", a);
            dir = argv[++i];
        } else if (strncmp(a, "--dir=", 6) == 0) {
            dir = a + 6;
        } else if (a[0] == '-' && a[1] != '\0') {
            return usage_error("unknown option '%s'", a);
        } else if (!kind) {
            kind = a;
        } else if (!name) {
            name = a;
        } else {
            return usage_error("unexpected argument '%s'", a);
        }
    }
    if (!kind)
        return usage_error("what to create? (nexus new plugin NAME)");
    if (strcmp(kind, "plugin") != 0)
        return usage_error("cannot create a '%s': only 'plugin' is known", kind);
    if (!name)
        return usage_error("the plugin's NAME is missing");
    char why[160];
    if (!name_is_valid(name, why, sizeof(why))) {
        fprintf(stderr, "nexus new: '%s' is not a valid plugin name: %s\n", name, why);
        fprintf(stderr, "a plugin name matches [a-z][a-z0-9_]{0,%d}, for example my_api\n",
                PLUGIN_NAME_MAX - 1);
        return EX_USAGE_STATUS;
    }
    if (dir && !*dir)
        return usage_error("--dir needs a non-empty PATH");
    const char *target = dir ? dir : name;

    char upper[PLUGIN_NAME_MAX + 1];
    size_t nlen = strlen(name);
    for (size_t i = 0; i <= nlen; i++)
        upper[i] = name[i] >= 'a' && name[i] <= 'z' ? (char)(name[i] - 'a' + 'A') : name[i];

    bool made_dir = false;
    switch (dir_state(target)) {
    case DIR_ABSENT:
        if (mkdir(target, 0755) != 0) {
            fprintf(stderr, "nexus new: cannot create the folder %s: %s\n", target,
                    strerror(errno));
            return EX_CANTCREAT_STATUS;
        }
        made_dir = true;
        break;
    case DIR_EMPTY: break;
    case DIR_NOT_EMPTY:
        fprintf(stderr,
                "nexus new: %s already exists and is not empty; nothing was written\n"
                "choose another NAME, or an absent or empty folder with --dir PATH\n",
                target);
        return EX_CANTCREAT_STATUS;
    case DIR_NOT_A_DIR:
        fprintf(stderr, "nexus new: %s exists and is not a folder; nothing was written\n", target);
        return EX_CANTCREAT_STATUS;
    default:
        fprintf(stderr, "nexus new: cannot use the folder %s: %s\n", target, strerror(errno));
        return EX_CANTCREAT_STATUS;
    }

    char paths[NX_ARRAY_LEN(files)][PATH_MAX];
    size_t written = 0;
    for (; written < NX_ARRAY_LEN(files); written++) {
        char file[PLUGIN_NAME_MAX + 32];
        expand_name(files[written].file, name, file, sizeof(file));
        if ((size_t)snprintf(paths[written], sizeof(paths[written]), "%s/%s", target, file) >=
            sizeof(paths[written])) {
            errno = ENAMETOOLONG;
            break;
        }
        if (write_file(paths[written], files[written].mode, files[written].tmpl, name, upper) != 0)
            break;
    }
    if (written < NX_ARRAY_LEN(files)) {
        int e = errno;
        fprintf(stderr, "nexus new: cannot write %s: %s\n", paths[written], strerror(e));
        /* Take back what this run made, so that running it again works. */
        for (size_t i = 0; i < written; i++)
            unlink(paths[i]);
        if (made_dir)
            rmdir(target);
        return EX_CANTCREAT_STATUS;
    }

    size_t tlen = strlen(target);
    printf("created plugin %s in %s%s\n", name, target, target[tlen - 1] == '/' ? "" : "/");
    for (size_t i = 0; i < NX_ARRAY_LEN(files); i++) {
        char what[256];
        expand_name(files[i].what, name, what, sizeof(what));
        printf("  %-28s %s\n", paths[i], what);
    }
    printf("\nnext steps:\n  cd ");
    print_shell_word(target);
    printf("\n"
           "  make          # builds %s.so against the installed Nexus (pkg-config nexus)\n"
           "  make test     # starts nexus with %s.so on a free port and calls its routes\n"
           "  make run      # serves it with the bundled plugins on http://127.0.0.1:8000\n"
           "  curl http://127.0.0.1:8000/%s\n",
           name, name, name);
    print_pkg_config_hint();
    return 0;
}
