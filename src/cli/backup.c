/*
 * backup.c - `nexus backup --output FILE` and `nexus restore FILE`: the configured database
 * to an archive and back, with a checksum beside the archive.
 *
 *   SQLite      the archive is a copy of the database file, made with SQLite's online
 *               backup API while the server runs: a read transaction held on the source
 *               pins one snapshot, so writers carry on and the copy is consistent. Restore
 *               runs the backup API the other way, into the live file, in one write
 *               transaction: a running server's readers see the old database or the new one,
 *               never a mix.
 *   PostgreSQL  pg_dump --format=custom, pg_restore (--single-transaction).
 *   MySQL       mysqldump (--single-transaction), the mysql client (MariaDB's names first).
 *
 * The tools get the connection through their environment (PGPASSWORD, PGHOST...) or, for
 * MySQL, an option file readable only by us: never on a command line, which `ps` shows.
 *
 * An archive is written under a temporary name and renamed when complete, with mode 0600
 * (it holds all the data), then FILE.sha256 is written in the format of `sha256sum -c`.
 * Restore checks that checksum and that the archive opens before touching the database, and
 * refuses a database that already has tables unless --force. A progress bar goes to stderr
 * when it is a terminal.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include <nexus/arena.h>

#include "cli/cli.h"
#include "config/config.h"
#include "core/arena.h"
#include "core/util.h"
#include "db/db_impl.h"

#define EX_USAGE_STATUS 64
#define EX_INTERRUPTED 130
/* Pages copied per sqlite3_backup_step: small enough that a writer waits little. */
#define SQLITE_STEP_PAGES 256
/* How long a SQLite step may keep finding the database locked before restore gives up. */
#define SQLITE_BUSY_MS 60000
#define PROGRESS_EVERY_MS 100

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    interrupted = sig;
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("nexus: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static const char *kind_name(nx_db_kind k)
{
    return k == NX_DBK_POSTGRESQL ? "postgresql" : k == NX_DBK_MYSQL ? "mysql" : "sqlite";
}

/* ---- progress ------------------------------------------------------------------------- */

typedef struct progress {
    bool on; /* stderr is a terminal */
    const char *what;
    uint64_t start, last;
    bool shown;
} progress;

static void progress_init(progress *p, const char *what)
{
    p->on = isatty(STDERR_FILENO);
    p->what = what;
    p->start = nx_now_ms();
    p->last = 0;
    p->shown = false;
}

static void human(uint64_t bytes, char *out, size_t len)
{
    if (bytes < 1024)
        snprintf(out, len, "%llu B", (unsigned long long)bytes);
    else if (bytes < 1024 * 1024)
        snprintf(out, len, "%.1f KiB", (double)bytes / 1024);
    else if (bytes < 1024ull * 1024 * 1024)
        snprintf(out, len, "%.1f MiB", (double)bytes / (1024 * 1024));
    else
        snprintf(out, len, "%.2f GiB", (double)bytes / (1024.0 * 1024 * 1024));
}

/* Shows done of total bytes (total 0: unknown, then only what is done and the time). */
static void progress_show(progress *p, uint64_t done, uint64_t total, bool final)
{
    if (!p->on)
        return;
    uint64_t now = nx_now_ms();
    if (!final && now - p->last < PROGRESS_EVERY_MS)
        return;
    p->last = now;
    p->shown = true;
    char d[32], t[32];
    human(done, d, sizeof(d));
    unsigned secs = (unsigned)((now - p->start) / 1000);
    if (total) {
        if (done > total)
            done = total;
        int width = 30, fill = (int)(done * (uint64_t)width / total);
        char bar[64];
        for (int i = 0; i < width; i++)
            bar[i] = i < fill ? '#' : '-';
        bar[width] = '\0';
        human(total, t, sizeof(t));
        fprintf(stderr, "\r%-8s [%s] %3d%%  %s / %s  %us\033[K", p->what, bar,
                (int)(done * 100 / total), d, t, secs);
    } else {
        fprintf(stderr, "\r%-8s %s  %us\033[K", p->what, d, secs);
    }
    if (final)
        fputc('\n', stderr);
}

/* Clears the bar's line (before a message, or when the work failed). */
static void progress_clear(progress *p)
{
    if (p->on && p->shown)
        fprintf(stderr, "\r\033[K");
    p->shown = false;
}

/* ---- checksums ------------------------------------------------------------------------ */

/* SHA-256 of a file, hex. NX_OK, or NX_ERR with errno. */
static int file_sha256(const char *path, char hex[65], progress *pg)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NX_ERR;
    struct stat st;
    fstat(fd, &st);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        nx_oom();
    char *buf = nx_xmalloc(1 << 20);
    uint64_t done = 0;
    ssize_t n;
    while ((n = read(fd, buf, 1 << 20)) > 0) {
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        done += (uint64_t)n;
        if (pg)
            progress_show(pg, done, (uint64_t)st.st_size, false);
    }
    int saved = errno;
    free(buf);
    close(fd);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    if (n < 0) {
        errno = saved;
        return NX_ERR;
    }
    for (unsigned i = 0; i < len && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    hex[64] = '\0';
    return NX_OK;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static int fsync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        return NX_ERR;
    int rc = fsync(fd);
    close(fd);
    return rc == 0 ? NX_OK : NX_ERR;
}

/* The folder of path, for fsync after a rename in it. */
static void fsync_dir_of(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    fsync_path(dir, O_RDONLY | O_DIRECTORY);
}

/* Writes ARCHIVE.sha256 ("HEX  NAME\n", as sha256sum writes it), atomically. */
static int write_checksum(const char *archive, const char *hex)
{
    char path[PATH_MAX], tmp[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s.sha256", archive);
    snprintf(tmp, sizeof(tmp), "%s.partial-%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fail("cannot write %s: %s", tmp, strerror(errno));
        return NX_ERR;
    }
    fprintf(f, "%s  %s\n", hex, base_name(archive));
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        fail("cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return NX_ERR;
    }
    fsync_dir_of(path);
    return NX_OK;
}

/*
 * Checks archive against ARCHIVE.sha256. 1: it matches; 0: there is no checksum file;
 * -1: a mismatch or an unreadable file (reported).
 */
static int check_checksum(const char *archive, progress *pg)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s.sha256", archive);
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        fail("cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    char line[PATH_MAX + 80] = "";
    bool got = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    char want[65];
    size_t hexlen = got ? strspn(line, "0123456789abcdefABCDEF") : 0;
    if (hexlen != 64 || (line[64] != ' ' && line[64] != '\t')) {
        fail("%s is not a checksum file: expected a line \"SHA256  %s\" as sha256sum writes", path,
             base_name(archive));
        return -1;
    }
    for (int i = 0; i < 64; i++)
        want[i] = (char)((line[i] >= 'A' && line[i] <= 'F') ? line[i] - 'A' + 'a' : line[i]);
    want[64] = '\0';
    char have[65];
    progress_init(pg, "checksum");
    if (file_sha256(archive, have, pg) != NX_OK) {
        progress_clear(pg);
        fail("cannot read %s: %s", archive, strerror(errno));
        return -1;
    }
    progress_clear(pg);
    if (strcmp(want, have) != 0) {
        fail("checksum mismatch: %s does not match %s (expected %s, computed %s): the archive "
             "is damaged or was changed",
             archive, path, want, have);
        return -1;
    }
    return 1;
}

/* ---- child processes ------------------------------------------------------------------ */

/* The tool's path: PATH first, then the newest /usr/lib/postgresql/N/bin for pg_*. */
static char *find_tool(const char *const names[], size_t n)
{
    const char *path = getenv("PATH");
    char buf[PATH_MAX];
    for (size_t k = 0; k < n; k++) {
        const char *p = path ? path : "/usr/local/bin:/usr/bin:/bin";
        while (*p) {
            size_t len = strcspn(p, ":");
            snprintf(buf, sizeof(buf), "%.*s/%s", (int)(len ? len : 1), len ? p : ".", names[k]);
            if (access(buf, X_OK) == 0)
                return nx_xstrdup(buf);
            p += len + (p[len] == ':');
        }
    }
    if (strncmp(names[0], "pg_", 3) != 0)
        return NULL;
    DIR *d = opendir("/usr/lib/postgresql");
    if (!d)
        return NULL;
    long best = -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long v = strtol(e->d_name, &end, 10);
        if (end == e->d_name || v <= best)
            continue;
        snprintf(buf, sizeof(buf), "/usr/lib/postgresql/%s/bin/%s", e->d_name, names[0]);
        if (access(buf, X_OK) == 0)
            best = v;
    }
    closedir(d);
    if (best < 0)
        return NULL;
    snprintf(buf, sizeof(buf), "/usr/lib/postgresql/%ld/bin/%s", best, names[0]);
    return nx_xstrdup(buf);
}

/* Where the child process is in file (dev, ino): the offset of its descriptor of it. */
static uint64_t child_offset(pid_t pid, dev_t dev, ino_t ino)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    uint64_t pos = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[PATH_MAX];
        struct stat st;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        if (stat(p, &st) != 0 || st.st_dev != dev || st.st_ino != ino)
            continue;
        snprintf(p, sizeof(p), "/proc/%d/fdinfo/%s", (int)pid, e->d_name);
        FILE *f = fopen(p, "r");
        if (f) {
            unsigned long long v;
            if (fscanf(f, "pos: %llu", &v) == 1 && v > pos)
                pos = v;
            fclose(f);
        }
    }
    closedir(d);
    return pos;
}

/* What a running tool is watched by, for the progress bar. */
typedef struct watch {
    const char *grows; /* a file it writes: its size is shown */
    const char *reads; /* a file it reads: its position in it, of the file's size */
} watch;

/*
 * Runs argv (environment: ours) with stdin from in_path (NULL: /dev/null) and stdout to
 * out_fd (-1: ours; -2: /dev/null); its stderr is ours. Returns its exit status, or -1 when
 * it could not start or was killed (reported).
 */
static int run_tool(char *const argv[], const char *in_path, int out_fd, progress *pg,
                    const watch *w)
{
    int in = open(in_path ? in_path : "/dev/null", O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        fail("cannot open %s: %s", in_path, strerror(errno));
        return -1;
    }
    int devnull = out_fd == -2 ? open("/dev/null", O_WRONLY | O_CLOEXEC) : -1;
    struct stat rst = {0};
    bool reads = w && w->reads && stat(w->reads, &rst) == 0;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fail("fork: %s", strerror(errno));
        close(in);
        if (devnull >= 0)
            close(devnull);
        return -1;
    }
    if (pid == 0) {
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        dup2(in, STDIN_FILENO);
        if (out_fd >= 0)
            dup2(out_fd, STDOUT_FILENO);
        else if (devnull >= 0)
            dup2(devnull, STDOUT_FILENO);
        execv(argv[0], argv);
        fprintf(stderr, "nexus: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(in);
    if (devnull >= 0)
        close(devnull);
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR) {
            status = -1;
            break;
        }
        if (interrupted)
            kill(pid, SIGTERM);
        if (pg && w && w->grows) {
            struct stat st;
            if (stat(w->grows, &st) == 0)
                progress_show(pg, (uint64_t)st.st_size, 0, false);
        } else if (pg && reads) {
            progress_show(pg, child_offset(pid, rst.st_dev, rst.st_ino), (uint64_t)rst.st_size,
                          false);
        } else if (pg) {
            progress_show(pg, 0, 0, false);
        }
        usleep(50 * 1000);
    }
    if (status == -1 || WIFSIGNALED(status)) {
        progress_clear(pg);
        if (!interrupted)
            fail("%s was killed by signal %d", argv[0], WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        return -1;
    }
    return WEXITSTATUS(status);
}

/* ---- PostgreSQL ----------------------------------------------------------------------- */

/* The connection settings as the PG* variables libpq's tools read. */
static void pg_environment(const nx_db_settings *s)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", s->port);
    unsetenv("PGHOSTADDR");
    unsetenv("PGSERVICE");
    setenv("PGHOST", s->host, 1);
    setenv("PGPORT", port, 1);
    setenv("PGDATABASE", s->name, 1);
    if (*s->user)
        setenv("PGUSER", s->user, 1);
    if (*s->password)
        setenv("PGPASSWORD", s->password, 1);
    if (*s->application_name)
        setenv("PGAPPNAME", s->application_name, 1);
    static const char *const map[][2] = {
        {"sslmode", "PGSSLMODE"},
        {"sslrootcert", "PGSSLROOTCERT"},
        {"sslcert", "PGSSLCERT"},
        {"sslkey", "PGSSLKEY"},
        {"sslcrl", "PGSSLCRL"},
        {"sslsni", "PGSSLSNI"},
        {"sslcompression", "PGSSLCOMPRESSION"},
        {"requiressl", "PGREQUIRESSL"},
        {"gssencmode", "PGGSSENCMODE"},
        {"channel_binding", "PGCHANNELBINDING"},
        {"connect_timeout", "PGCONNECT_TIMEOUT"},
        {"options", "PGOPTIONS"},
        {"application_name", "PGAPPNAME"},
        {"target_session_attrs", "PGTARGETSESSIONATTRS"},
        {"krbsrvname", "PGKRBSRVNAME"},
        {"passfile", "PGPASSFILE"},
    };
    char *opts = nx_xstrdup(s->options ? s->options : "");
    char *save = NULL;
    for (char *kv = strtok_r(opts, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq)
            continue;
        *eq = '\0';
        if (strcmp(kv, "host") == 0)
            continue; /* a socket folder: already s->host */
        const char *var = NULL;
        for (size_t i = 0; i < NX_ARRAY_LEN(map); i++)
            if (strcmp(kv, map[i][0]) == 0)
                var = map[i][1];
        if (var)
            setenv(var, eq + 1, 1);
        else
            fprintf(stderr,
                    "nexus: warning: database.url option '%s' is not passed to the "
                    "PostgreSQL tools\n",
                    kv);
    }
    free(opts);
}

typedef struct pg_tables {
    const nx_db_settings *s;
    long long n;
    char names[256];
    char err[300];
} pg_tables;

static int count_pg_tables(void *arg)
{
    pg_tables *t = arg;
    nx_arena *a = nx_arena_new(0);
    nx_db_session ss = {.arena = a};
    nx_db_result *r = nx_db_session_query(
        &ss,
        "SELECT count(*), coalesce(string_agg(schemaname || '.' || tablename, ', ' ORDER BY "
        "schemaname, tablename), '') FROM pg_catalog.pg_tables WHERE schemaname NOT IN "
        "('pg_catalog', 'information_schema')",
        NULL, 0);
    int rc = NX_OK;
    if (!r) {
        snprintf(t->err, sizeof(t->err), "%s", ss.err.message);
        rc = NX_ERR;
    } else {
        t->n = nx_db_i64(r, 0, 0);
        const char *names = nx_db_text(r, 0, 1);
        snprintf(t->names, sizeof(t->names), "%s", names ? names : "");
    }
    nx_arena_free(a);
    return rc;
}

static int pg_backup(const nx_db_settings *s, const char *tmp)
{
    static const char *const names[] = {"pg_dump"};
    char *tool = find_tool(names, 1);
    if (!tool) {
        fail("pg_dump is not installed (looked in PATH and /usr/lib/postgresql/*/bin); "
             "install postgresql-client");
        return NX_ERR;
    }
    pg_environment(s);
    char file_arg[PATH_MAX + 16];
    snprintf(file_arg, sizeof(file_arg), "--file=%s", tmp);
    char *argv[] = {tool, "--format=custom", "--no-password", file_arg, NULL};
    progress pg;
    progress_init(&pg, "backup");
    watch w = {.grows = tmp};
    int st = run_tool(argv, NULL, -1, &pg, &w);
    if (st == 0) {
        struct stat sb;
        progress_show(&pg, stat(tmp, &sb) == 0 ? (uint64_t)sb.st_size : 0, 0, true);
    } else {
        progress_clear(&pg);
        if (st > 0)
            fail("pg_dump failed (exit status %d): see its message above", st);
    }
    free(tool);
    return st == 0 ? NX_OK : NX_ERR;
}

static int pg_verify(const char *archive, int *entries)
{
    static const char *const names[] = {"pg_restore"};
    char *tool = find_tool(names, 1);
    if (!tool) {
        fail("pg_restore is not installed (looked in PATH and /usr/lib/postgresql/*/bin); "
             "install postgresql-client");
        return NX_ERR;
    }
    char *argv[] = {tool, "--list", (char *)archive, NULL};
    FILE *out = tmpfile();
    int st = run_tool(argv, NULL, out ? fileno(out) : -2, NULL, NULL);
    *entries = 0;
    if (out) {
        rewind(out);
        char line[1024];
        while (fgets(line, sizeof(line), out))
            *entries += line[0] >= '0' && line[0] <= '9';
        fclose(out);
    }
    free(tool);
    if (st != 0) {
        if (st > 0)
            fail("%s is not a readable pg_dump archive: pg_restore --list failed (exit status "
                 "%d)",
                 archive, st);
        return NX_ERR;
    }
    return NX_OK;
}

static int pg_restore(const nx_db_settings *s, const char *archive, bool force)
{
    static const char *const names[] = {"pg_restore"};
    pg_tables t = {.s = s};
    nx_db_settings cs = *s;
    cs.pool_size = 1;
    cs.max_overflow = 0;
    if (nx_db_run_sync(&cs, count_pg_tables, &t) != NX_OK) {
        fail("cannot reach the PostgreSQL database %s on %s:%d: %s", s->name, s->host, s->port,
             t.err);
        return NX_ERR;
    }
    if (t.n > 0 && !force) {
        fail("the PostgreSQL database %s is not empty (%lld table%s: %s): restoring would "
             "replace its tables; pass --force to restore over it",
             s->name, t.n, t.n == 1 ? "" : "s", t.names);
        return NX_ERR;
    }
    char *tool = find_tool(names, 1);
    if (!tool) {
        fail("pg_restore is not installed (looked in PATH and /usr/lib/postgresql/*/bin); "
             "install postgresql-client");
        return NX_ERR;
    }
    pg_environment(s);
    char db_arg[1024];
    snprintf(db_arg, sizeof(db_arg), "--dbname=%s", s->name);
    char *argv[12];
    int n = 0;
    argv[n++] = tool;
    argv[n++] = db_arg;
    argv[n++] = "--no-password";
    argv[n++] = "--single-transaction";
    argv[n++] = "--exit-on-error";
    argv[n++] = "--no-owner";
    argv[n++] = "--no-privileges";
    if (t.n > 0) {
        argv[n++] = "--clean";
        argv[n++] = "--if-exists";
    }
    argv[n++] = (char *)archive;
    argv[n] = NULL;
    progress pg;
    progress_init(&pg, "restore");
    watch w = {.reads = archive};
    int st = run_tool(argv, NULL, -2, &pg, &w);
    free(tool);
    if (st != 0) {
        progress_clear(&pg);
        if (st > 0)
            fail("pg_restore failed (exit status %d): see its message above; it ran in one "
                 "transaction, so the database is as it was",
                 st);
        return NX_ERR;
    }
    struct stat sb;
    stat(archive, &sb);
    progress_show(&pg, (uint64_t)sb.st_size, (uint64_t)sb.st_size, true);
    return NX_OK;
}

/* ---- MySQL ------------------------------------------------------------------------------- */

/* Appends "key=value" to an option file, quoted as the MySQL option parser reads it. */
static void option_line(FILE *f, const char *key, const char *value)
{
    fprintf(f, "%s=\"", key);
    for (const char *p = value; *p; p++) {
        if (*p == '\\' || *p == '"')
            fputc('\\', f);
        fputc(*p, f);
    }
    fputs("\"\n", f);
}

/* An option file with the connection, mode 0600, for --defaults-extra-file; the caller
 * unlinks it. NX_ERR when it cannot be written. */
static int mysql_options(const nx_db_settings *s, char *path, size_t len)
{
    const char *dir = getenv("TMPDIR");
    snprintf(path, len, "%s/nexus-mysql-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        fail("cannot create a temporary option file in %s: %s", dir && *dir ? dir : "/tmp",
             strerror(errno));
        return NX_ERR;
    }
    FILE *f = fdopen(fd, "w");
    fprintf(f, "[client]\n");
    if (s->host[0] == '/') {
        option_line(f, "socket", s->host);
    } else {
        option_line(f, "host", s->host);
        fprintf(f, "port=%d\n", s->port);
    }
    if (*s->user)
        option_line(f, "user", s->user);
    if (*s->password)
        option_line(f, "password", s->password);
    if (fclose(f) != 0) {
        fail("cannot write %s: %s", path, strerror(errno));
        unlink(path);
        return NX_ERR;
    }
    return NX_OK;
}

static char *mysql_tool(bool dump)
{
    static const char *const dumps[] = {"mariadb-dump", "mysqldump"};
    static const char *const clients[] = {"mariadb", "mysql"};
    char *t = find_tool(dump ? dumps : clients, 2);
    if (!t)
        fail("%s is not installed; install mariadb-client (or mysql-client)",
             dump ? "mariadb-dump (or mysqldump)" : "mariadb (or mysql)");
    return t;
}

static int mysql_backup(const nx_db_settings *s, const char *tmp)
{
    char *tool = mysql_tool(true);
    if (!tool)
        return NX_ERR;
    char cnf[PATH_MAX];
    if (mysql_options(s, cnf, sizeof(cnf)) != NX_OK) {
        free(tool);
        return NX_ERR;
    }
    char defaults[PATH_MAX + 32], result[PATH_MAX + 32];
    snprintf(defaults, sizeof(defaults), "--defaults-extra-file=%s", cnf);
    snprintf(result, sizeof(result), "--result-file=%s", tmp);
    /* No --databases: the dump names no database, so it restores into the configured one,
     * whatever the name of the one it came from. */
    char *argv[] = {tool,         defaults,     "--single-transaction", "--routines",
                    "--triggers", "--hex-blob", "--no-tablespaces",     result,
                    s->name,      NULL};
    progress pg;
    progress_init(&pg, "backup");
    watch w = {.grows = tmp};
    int st = run_tool(argv, NULL, -1, &pg, &w);
    unlink(cnf);
    free(tool);
    if (st != 0) {
        progress_clear(&pg);
        if (st > 0)
            fail("%s failed (exit status %d): see its message above", argv[0], st);
        return NX_ERR;
    }
    struct stat sb;
    progress_show(&pg, stat(tmp, &sb) == 0 ? (uint64_t)sb.st_size : 0, 0, true);
    return NX_OK;
}

static int mysql_verify(const char *archive)
{
    FILE *f = fopen(archive, "rb");
    if (!f) {
        fail("cannot read %s: %s", archive, strerror(errno));
        return NX_ERR;
    }
    char tail[512];
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size > (long)sizeof(tail) - 1 ? size - (long)sizeof(tail) + 1 : 0, SEEK_SET);
    size_t n = fread(tail, 1, sizeof(tail) - 1, f);
    fclose(f);
    tail[n] = '\0';
    if (!strstr(tail, "-- Dump completed")) {
        fail("%s is an incomplete MySQL dump: it does not end with \"-- Dump completed\"", archive);
        return NX_ERR;
    }
    return NX_OK;
}

static int mysql_restore(const nx_db_settings *s, const char *archive, bool force)
{
    char *tool = mysql_tool(false);
    if (!tool)
        return NX_ERR;
    char cnf[PATH_MAX];
    if (mysql_options(s, cnf, sizeof(cnf)) != NX_OK) {
        free(tool);
        return NX_ERR;
    }
    char defaults[PATH_MAX + 32];
    snprintf(defaults, sizeof(defaults), "--defaults-extra-file=%s", cnf);
    int rc = NX_ERR;
    FILE *out = tmpfile();
    char *count[] = {tool,
                     defaults,
                     "--batch",
                     "--skip-column-names",
                     "--execute=SELECT COUNT(*), COALESCE(GROUP_CONCAT(table_name ORDER BY "
                     "table_name SEPARATOR ', '), '') FROM information_schema.tables WHERE "
                     "table_schema = DATABASE()",
                     s->name,
                     NULL};
    int st = out ? run_tool(count, NULL, fileno(out), NULL, NULL) : -1;
    long long ntables = -1;
    char names[256] = "";
    if (st == 0) {
        rewind(out);
        char line[1024] = "";
        if (fgets(line, sizeof(line), out)) {
            char *tab = strchr(line, '\t');
            ntables = strtoll(line, NULL, 10);
            if (tab)
                snprintf(names, sizeof(names), "%.*s", (int)strcspn(tab + 1, "\n"), tab + 1);
        }
    }
    if (out)
        fclose(out);
    if (ntables < 0) {
        fail("cannot reach the MySQL database %s on %s: see the message above", s->name, s->host);
    } else if (ntables > 0 && !force) {
        fail("the MySQL database %s is not empty (%lld table%s: %s): restoring would replace "
             "its tables; pass --force to restore over it",
             s->name, ntables, ntables == 1 ? "" : "s", names);
    } else {
        char *argv[] = {tool, defaults, s->name, NULL};
        progress pg;
        progress_init(&pg, "restore");
        watch w = {.reads = archive};
        st = run_tool(argv, archive, -2, &pg, &w);
        if (st == 0) {
            struct stat sb;
            stat(archive, &sb);
            progress_show(&pg, (uint64_t)sb.st_size, (uint64_t)sb.st_size, true);
            rc = NX_OK;
        } else {
            progress_clear(&pg);
            if (st > 0)
                fail("%s failed (exit status %d) while restoring: see its message above; "
                     "MySQL commits each table's DDL, so the database may be partly restored",
                     tool, st);
        }
    }
    unlink(cnf);
    free(tool);
    return rc;
}

/* ---- SQLite ------------------------------------------------------------------------------- */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/*
 * Copies src into dst with the online backup API, SQLITE_STEP_PAGES at a time, waiting out
 * a lock another connection holds for a while. NX_OK, or NX_ERR with the reason in err.
 */
static int sqlite_copy(sqlite3 *dst, sqlite3 *src, progress *pg, char *err, size_t errlen)
{
    uint64_t page = 4096;
    sqlite3_stmt *ps = NULL;
    if (sqlite3_prepare_v2(src, "PRAGMA page_size", -1, &ps, NULL) == SQLITE_OK &&
        sqlite3_step(ps) == SQLITE_ROW)
        page = (uint64_t)sqlite3_column_int64(ps, 0);
    sqlite3_finalize(ps);
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (!b) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(dst));
        return NX_ERR;
    }
    uint64_t busy_since = 0;
    int rc;
    for (;;) {
        rc = sqlite3_backup_step(b, SQLITE_STEP_PAGES);
        int total = sqlite3_backup_pagecount(b), left = sqlite3_backup_remaining(b);
        if (rc == SQLITE_OK || rc == SQLITE_DONE)
            progress_show(pg, (uint64_t)(total - left) * page, (uint64_t)total * page,
                          rc == SQLITE_DONE);
        if (rc == SQLITE_DONE || interrupted)
            break;
        if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
            uint64_t now = nx_now_ms();
            if (!busy_since)
                busy_since = now;
            if (now - busy_since > SQLITE_BUSY_MS)
                break;
            sleep_ms(10);
            continue;
        }
        if (rc != SQLITE_OK)
            break;
        busy_since = 0;
    }
    int page_size_issue = rc == SQLITE_READONLY;
    sqlite3_backup_finish(b);
    if (rc == SQLITE_DONE)
        return NX_OK;
    if (interrupted)
        snprintf(err, errlen, "interrupted");
    else if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        snprintf(err, errlen, "the database stayed locked by another writer for %d s",
                 SQLITE_BUSY_MS / 1000);
    else if (page_size_issue)
        snprintf(err, errlen,
                 "%s (the archive's page size differs from the database's, which SQLite "
                 "cannot change in WAL mode: stop the server, move the database file and its "
                 "-wal and -shm files away, and restore again)",
                 sqlite3_errstr(rc));
    else
        snprintf(err, errlen, "%s", sqlite3_errmsg(dst));
    return NX_ERR;
}

static int sqlite_backup(const nx_db_settings *s, const char *tmp)
{
    struct stat st;
    if (stat(s->path, &st) != 0) {
        fail("no SQLite database at %s (database.path): %s", s->path, strerror(errno));
        return NX_ERR;
    }
    sqlite3 *src = NULL, *dst = NULL;
    char err[512] = "";
    int rc = NX_ERR;
    if (sqlite3_open_v2(s->path, &src, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        fail("cannot open the SQLite database %s: %s", s->path, sqlite3_errmsg(src));
        goto cleanup;
    }
    sqlite3_busy_timeout(src, 10000);
    /* The read transaction pins one snapshot for the whole copy: the server's writers go
     * on (WAL), and the backup does not restart each time one commits. */
    char *msg = NULL;
    if (sqlite3_exec(src, "BEGIN; SELECT count(*) FROM sqlite_master;", NULL, NULL, &msg) !=
        SQLITE_OK) {
        fail("cannot read the SQLite database %s: %s", s->path, msg ? msg : sqlite3_errmsg(src));
        sqlite3_free(msg);
        goto cleanup;
    }
    if (sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        fail("cannot write %s: %s", tmp, sqlite3_errmsg(dst));
        goto cleanup;
    }
    progress pg;
    progress_init(&pg, "backup");
    if (sqlite_copy(dst, src, &pg, err, sizeof(err)) != NX_OK) {
        progress_clear(&pg);
        if (!interrupted)
            fail("backup of %s failed: %s", s->path, err);
        goto cleanup;
    }
    sqlite3_exec(src, "COMMIT", NULL, NULL, NULL);
    /* The copy keeps the source's WAL mode; an archive is one self-contained file. */
    if (sqlite3_exec(dst, "PRAGMA journal_mode = DELETE", NULL, NULL, &msg) != SQLITE_OK) {
        progress_clear(&pg);
        fail("cannot finish %s: %s", tmp, msg ? msg : sqlite3_errmsg(dst));
        sqlite3_free(msg);
        goto cleanup;
    }
    rc = NX_OK;
cleanup:
    sqlite3_close_v2(dst);
    sqlite3_close_v2(src);
    return rc;
}

/* Opens an archive read-only without ever writing to it or its folder (immutable). */
static int sqlite_open_archive(const char *archive, sqlite3 **db)
{
    char real[PATH_MAX];
    if (!realpath(archive, real))
        snprintf(real, sizeof(real), "%s", archive);
    /* A URI: '%', '?' and '#' in the path are escaped. */
    char uri[3 * PATH_MAX + 32];
    size_t o = (size_t)snprintf(uri, sizeof(uri), "file:");
    for (const char *p = real; *p && o + 4 < sizeof(uri); p++) {
        if (*p == '%' || *p == '?' || *p == '#')
            o += (size_t)snprintf(uri + o, sizeof(uri) - o, "%%%02X", (unsigned char)*p);
        else
            uri[o++] = *p;
    }
    snprintf(uri + o, sizeof(uri) - o, "?immutable=1");
    int rc = sqlite3_open_v2(uri, db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
    if (rc != SQLITE_OK) {
        fail("cannot open %s as a SQLite database: %s", archive,
             *db ? sqlite3_errmsg(*db) : sqlite3_errstr(rc));
        return NX_ERR;
    }
    return NX_OK;
}

/* The user tables of db: how many, and their names (for the message). -1 on error. */
static long long sqlite_tables(sqlite3 *db, char *names, size_t len)
{
    sqlite3_stmt *st = NULL;
    long long n = -1;
    if (sqlite3_prepare_v2(db,
                           "SELECT count(*), coalesce(group_concat(name, ', '), '') FROM "
                           "(SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT "
                           "LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name)",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        n = sqlite3_column_int64(st, 0);
        const unsigned char *t = sqlite3_column_text(st, 1);
        snprintf(names, len, "%s", t ? (const char *)t : "");
    }
    sqlite3_finalize(st);
    return n;
}

static int sqlite_verify(const char *archive, char *what, size_t len)
{
    sqlite3 *db = NULL;
    int rc = NX_ERR;
    if (sqlite_open_archive(archive, &db) != NX_OK)
        goto cleanup;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK) {
        fail("%s is not a readable SQLite database: %s", archive, sqlite3_errmsg(db));
        goto cleanup;
    }
    int step = sqlite3_step(st);
    const unsigned char *first = step == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
    if (!first || strcmp((const char *)first, "ok") != 0) {
        fail("%s fails SQLite's integrity check: %s", archive,
             first ? (const char *)first : sqlite3_errmsg(db));
        sqlite3_finalize(st);
        goto cleanup;
    }
    sqlite3_finalize(st);
    char names[256];
    long long n = sqlite_tables(db, names, sizeof(names));
    snprintf(what, len, "a SQLite database, integrity ok, %lld table%s", n, n == 1 ? "" : "s");
    rc = NX_OK;
cleanup:
    sqlite3_close_v2(db);
    return rc;
}

static int mkdir_parents(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0750) != 0 && errno != EEXIST)
            return NX_ERR;
        *p = '/';
    }
    return NX_OK;
}

/*
 * Restores into the live file through the backup API: the whole copy is one write
 * transaction on the database, which a running server's readers see commit at once (WAL),
 * and whose writers wait for it (their statements retry on SQLITE_BUSY).
 */
static int sqlite_restore(const nx_db_settings *s, const char *archive, bool force)
{
    sqlite3 *src = NULL, *dst = NULL;
    int rc = NX_ERR;
    char err[512];
    if (sqlite_open_archive(archive, &src) != NX_OK)
        goto cleanup;
    if (mkdir_parents(s->path) != NX_OK) {
        fail("cannot create the folder of %s (database.path): %s", s->path, strerror(errno));
        goto cleanup;
    }
    if (sqlite3_open_v2(s->path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        fail("cannot open the SQLite database %s: %s", s->path, sqlite3_errmsg(dst));
        goto cleanup;
    }
    sqlite3_busy_timeout(dst, 10000);
    char names[256];
    long long n = sqlite_tables(dst, names, sizeof(names));
    if (n < 0) {
        fail("cannot read the SQLite database %s: %s", s->path, sqlite3_errmsg(dst));
        goto cleanup;
    }
    if (n > 0 && !force) {
        fail("the SQLite database %s is not empty (%lld table%s: %s): restoring would replace "
             "it; pass --force to restore over it",
             s->path, n, n == 1 ? "" : "s", names);
        goto cleanup;
    }
    sqlite3_busy_timeout(dst, 0); /* sqlite_copy waits itself, between steps */
    progress pg;
    progress_init(&pg, "restore");
    if (sqlite_copy(dst, src, &pg, err, sizeof(err)) != NX_OK) {
        progress_clear(&pg);
        if (!interrupted)
            fail("restore into %s failed: %s; the database is as it was", s->path, err);
        goto cleanup;
    }
    rc = NX_OK;
cleanup:
    sqlite3_close_v2(dst);
    sqlite3_close_v2(src);
    return rc;
}

/* ---- the commands ------------------------------------------------------------------------- */

typedef struct opts {
    const char *output;  /* backup */
    const char *archive; /* restore */
    bool force, verify;
    char **cargv; /* argv without our own options, for nx_config_load */
    int cargc;
} opts;

/*
 * Splits argv[2..]: our options out, the rest (configuration flags, each with its value)
 * kept for nx_config_load. Returns 0, or an exit status.
 */
static int parse(int argc, char **argv, bool restore, opts *o, void (*usage)(FILE *))
{
    memset(o, 0, sizeof(*o));
    o->cargv = nx_xcalloc((size_t)argc + 1, sizeof(char *));
    o->cargv[o->cargc++] = argv[0];
    o->cargv[o->cargc++] = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return -1;
        }
        if (!restore && (strcmp(a, "--output") == 0 || strcmp(a, "-o") == 0)) {
            if (i + 1 >= argc) {
                fprintf(stderr, "nexus: %s needs a file name\n", a);
                return EX_USAGE_STATUS;
            }
            o->output = argv[++i];
        } else if (!restore && strncmp(a, "--output=", 9) == 0) {
            o->output = a + 9;
        } else if (restore && strcmp(a, "--force") == 0) {
            o->force = true;
        } else if (restore && strcmp(a, "--verify") == 0) {
            o->verify = true;
        } else if (a[0] == '-' && a[1]) {
            o->cargv[o->cargc++] = argv[i];
            if (!strchr(a, '=') && i + 1 < argc)
                o->cargv[o->cargc++] = argv[++i];
        } else if (restore && !o->archive) {
            o->archive = a;
        } else {
            fprintf(stderr, "nexus: unexpected argument '%s'\n\n", a);
            usage(stderr);
            return EX_USAGE_STATUS;
        }
    }
    if (!restore && (!o->output || !*o->output)) {
        fprintf(stderr, "nexus backup: --output FILE is required\n\n");
        usage(stderr);
        return EX_USAGE_STATUS;
    }
    if (restore && !o->archive) {
        fprintf(stderr, "nexus restore: the archive to restore is required\n\n");
        usage(stderr);
        return EX_USAGE_STATUS;
    }
    return 0;
}

/* Whether two paths name one existing file. */
static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

static int load_config(opts *o, nx_config *cfg)
{
    nx_config_defaults(cfg);
    if (nx_config_load(cfg, o->cargc, o->cargv, 2) != NX_OK)
        return NX_EX_CONFIG;
    if (cfg->db->kind == NX_DBK_SQLITE && strcmp(cfg->db->path, ":memory:") == 0) {
        fail("database.path is :memory:, which no other process can read: nothing to back up "
             "or restore");
        return 1;
    }
    return 0;
}

static void catch_signals(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static void backup_usage(FILE *out)
{
    fprintf(out, "usage: nexus backup --output FILE [--config FILE] [options]\n\n"
                 "Writes the configured database to FILE (mode 0600) and its checksum to "
                 "FILE.sha256\n"
                 "(check it with: cd DIR && sha256sum -c FILE.sha256). The server may keep "
                 "running.\n"
                 "  sqlite      a copy of the database file (SQLite's online backup API)\n"
                 "  postgresql  pg_dump --format=custom\n"
                 "  mysql       mysqldump / mariadb-dump --single-transaction\n"
                 "The options are those of nexus serve (nexus serve --help).\n");
}

static void restore_usage(FILE *out)
{
    fprintf(out, "usage: nexus restore FILE [--force] [--verify] [--config FILE] [options]\n\n"
                 "Restores the configured database from FILE, made by nexus backup. FILE.sha256 "
                 "is\n"
                 "checked first when it exists, and the archive must open.\n"
                 "  --verify  only check: the checksum (FILE.sha256 must exist) and that the "
                 "archive\n"
                 "            opens (SQLite: integrity_check; PostgreSQL: pg_restore --list); "
                 "restores\n"
                 "            nothing\n"
                 "  --force   restore over a database that already has tables (otherwise "
                 "refused)\n"
                 "A SQLite database may be restored while the server runs: its readers switch "
                 "from the\n"
                 "old data to the new at once.\n");
}

int nx_cmd_backup(int argc, char **argv)
{
    opts o;
    int rc = parse(argc, argv, false, &o, backup_usage);
    if (rc != 0) {
        free(o.cargv);
        return rc < 0 ? 0 : rc;
    }
    nx_config cfg;
    rc = load_config(&o, &cfg);
    char tmp[PATH_MAX + 32] = "";
    if (rc != 0)
        goto cleanup;
    rc = 1;
    const nx_db_settings *s = cfg.db;
    if (s->kind == NX_DBK_SQLITE && same_file(o.output, s->path)) {
        fail("--output %s is the database itself (database.path): choose another file", o.output);
        goto cleanup;
    }
    snprintf(tmp, sizeof(tmp), "%s.partial-%d", o.output, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        fail("cannot create %s: %s", tmp, strerror(errno));
        tmp[0] = '\0';
        goto cleanup;
    }
    close(fd);
    catch_signals();
    int done = s->kind == NX_DBK_POSTGRESQL ? pg_backup(s, tmp)
               : s->kind == NX_DBK_MYSQL    ? mysql_backup(s, tmp)
                                            : sqlite_backup(s, tmp);
    if (interrupted) {
        fail("interrupted: no archive written");
        rc = EX_INTERRUPTED;
        goto cleanup;
    }
    if (done != NX_OK)
        goto cleanup;
    if (fsync_path(tmp, O_RDONLY) != NX_OK || rename(tmp, o.output) != 0) {
        fail("cannot write %s: %s", o.output, strerror(errno));
        goto cleanup;
    }
    tmp[0] = '\0';
    fsync_dir_of(o.output);
    char hex[65];
    progress pg;
    progress_init(&pg, "checksum");
    int summed = file_sha256(o.output, hex, &pg);
    progress_clear(&pg);
    if (summed != NX_OK) {
        fail("cannot read back %s: %s", o.output, strerror(errno));
        goto cleanup;
    }
    if (write_checksum(o.output, hex) != NX_OK)
        goto cleanup;
    struct stat st;
    stat(o.output, &st);
    char size[32];
    human((uint64_t)st.st_size, size, sizeof(size));
    printf("backup of the %s database written to %s (%s), checksum in %s.sha256\n",
           kind_name(s->kind), o.output, size, o.output);
    rc = 0;
cleanup:
    if (tmp[0])
        unlink(tmp);
    nx_config_free(&cfg);
    free(o.cargv);
    return rc;
}

/* What an archive holds, from its first bytes. */
static int archive_kind(const char *path, nx_db_kind *kind)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail("cannot read %s: %s", path, strerror(errno));
        return NX_ERR;
    }
    char head[1024];
    size_t n = fread(head, 1, sizeof(head) - 1, f);
    fclose(f);
    head[n] = '\0';
    if (n >= 16 && memcmp(head, "SQLite format 3", 16) == 0) {
        *kind = NX_DBK_SQLITE;
        return NX_OK;
    }
    if (n >= 5 && memcmp(head, "PGDMP", 5) == 0) {
        *kind = NX_DBK_POSTGRESQL;
        return NX_OK;
    }
    if (strstr(head, "-- MySQL dump") || strstr(head, "-- MariaDB dump")) {
        *kind = NX_DBK_MYSQL;
        return NX_OK;
    }
    fail("%s is not an archive of nexus backup: neither a SQLite database, a pg_dump custom "
         "archive nor a MySQL dump",
         path);
    return NX_ERR;
}

int nx_cmd_restore(int argc, char **argv)
{
    opts o;
    int rc = parse(argc, argv, true, &o, restore_usage);
    if (rc != 0) {
        free(o.cargv);
        return rc < 0 ? 0 : rc;
    }
    nx_config cfg;
    rc = load_config(&o, &cfg);
    if (rc != 0)
        goto cleanup;
    rc = 1;
    const nx_db_settings *s = cfg.db;
    if (s->kind == NX_DBK_SQLITE && same_file(o.archive, s->path)) {
        fail("%s is the database itself (database.path): nothing to restore", o.archive);
        goto cleanup;
    }
    catch_signals();
    nx_db_kind kind;
    if (archive_kind(o.archive, &kind) != NX_OK)
        goto cleanup;
    progress pg;
    int sum = check_checksum(o.archive, &pg);
    if (sum < 0)
        goto cleanup;
    if (sum == 0 && o.verify) {
        fail("no checksum file %s.sha256 beside the archive: it cannot be verified", o.archive);
        goto cleanup;
    }
    if (sum == 0)
        fprintf(stderr,
                "nexus: warning: no checksum file %s.sha256: the archive is restored "
                "unchecked\n",
                o.archive);
    char what[200] = "";
    int entries = 0;
    int opened = kind == NX_DBK_SQLITE       ? sqlite_verify(o.archive, what, sizeof(what))
                 : kind == NX_DBK_POSTGRESQL ? pg_verify(o.archive, &entries)
                                             : mysql_verify(o.archive);
    if (opened != NX_OK)
        goto cleanup;
    if (kind == NX_DBK_POSTGRESQL)
        snprintf(what, sizeof(what), "a PostgreSQL archive (pg_dump custom format), %d entries",
                 entries);
    else if (kind == NX_DBK_MYSQL)
        snprintf(what, sizeof(what), "a complete MySQL dump");
    if (o.verify) {
        printf("%s: checksum ok, %s\n", o.archive, what);
        rc = 0;
        goto cleanup;
    }
    if (kind != s->kind) {
        fail("%s is %s, but the configured database is %s (database.type): nothing restored",
             o.archive, what, kind_name(s->kind));
        goto cleanup;
    }
    int done = kind == NX_DBK_POSTGRESQL ? pg_restore(s, o.archive, o.force)
               : kind == NX_DBK_MYSQL    ? mysql_restore(s, o.archive, o.force)
                                         : sqlite_restore(s, o.archive, o.force);
    if (interrupted) {
        fail("interrupted%s", kind == NX_DBK_MYSQL ? ": the database may be partly restored"
                                                   : ": the database is as it was");
        rc = EX_INTERRUPTED;
        goto cleanup;
    }
    if (done != NX_OK)
        goto cleanup;
    printf("restored the %s database %s from %s\n", kind_name(s->kind),
           kind == NX_DBK_SQLITE ? s->path : s->name, o.archive);
    rc = 0;
cleanup:
    nx_config_free(&cfg);
    free(o.cargv);
    return rc;
}
