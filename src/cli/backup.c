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
 *
 * This file holds the commands and what the backends share (progress bar, checksums,
 * running a tool); each backend is in backup_pg.c, backup_mysql.c or backup_sqlite.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cli/backup.h"
#include "cli/cli.h"
#include "config/config.h"
#include "core/util.h"

#define EX_USAGE_STATUS 64
#define EX_INTERRUPTED 130
#define PROGRESS_EVERY_MS 100

volatile sig_atomic_t bk_interrupted;

static void on_signal(int sig)
{
    bk_interrupted = sig;
}

void bk_fail(const char *fmt, ...)
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

void bk_progress_init(bk_progress *p, const char *what)
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
void bk_progress_show(bk_progress *p, uint64_t done, uint64_t total, bool final)
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
void bk_progress_clear(bk_progress *p)
{
    if (p->on && p->shown)
        fprintf(stderr, "\r\033[K");
    p->shown = false;
}

/* ---- checksums ------------------------------------------------------------------------ */

/* SHA-256 of a file, hex. NX_OK, or NX_ERR with errno. */
static int file_sha256(const char *path, char hex[65], bk_progress *pg)
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
            bk_progress_show(pg, done, (uint64_t)st.st_size, false);
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
        bk_fail("cannot write %s: %s", tmp, strerror(errno));
        return NX_ERR;
    }
    fprintf(f, "%s  %s\n", hex, base_name(archive));
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        bk_fail("cannot write %s: %s", path, strerror(errno));
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
static int check_checksum(const char *archive, bk_progress *pg)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s.sha256", archive);
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        bk_fail("cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    char line[PATH_MAX + 80] = "";
    bool got = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    char want[65];
    size_t hexlen = got ? strspn(line, "0123456789abcdefABCDEF") : 0;
    if (hexlen != 64 || (line[64] != ' ' && line[64] != '\t')) {
        bk_fail("%s is not a checksum file: expected a line \"SHA256  %s\" as sha256sum writes",
                path, base_name(archive));
        return -1;
    }
    for (int i = 0; i < 64; i++)
        want[i] = (char)((line[i] >= 'A' && line[i] <= 'F') ? line[i] - 'A' + 'a' : line[i]);
    want[64] = '\0';
    char have[65];
    bk_progress_init(pg, "checksum");
    if (file_sha256(archive, have, pg) != NX_OK) {
        bk_progress_clear(pg);
        bk_fail("cannot read %s: %s", archive, strerror(errno));
        return -1;
    }
    bk_progress_clear(pg);
    if (strcmp(want, have) != 0) {
        bk_fail("checksum mismatch: %s does not match %s (expected %s, computed %s): the archive "
                "is damaged or was changed",
                archive, path, want, have);
        return -1;
    }
    return 1;
}

/* ---- child processes ------------------------------------------------------------------ */

/* The tool's path: PATH first, then the newest /usr/lib/postgresql/N/bin for pg_*. */
char *bk_find_tool(const char *const names[], size_t n)
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

/*
 * Runs argv (environment: ours) with stdin from in_path (NULL: /dev/null) and stdout to
 * out_fd (-1: ours; -2: /dev/null); its stderr is ours. Returns its exit status, or -1 when
 * it could not start or was killed (reported).
 */
int bk_run_tool(char *const argv[], const char *in_path, int out_fd, bk_progress *pg,
                const bk_watch *w)
{
    int in = open(in_path ? in_path : "/dev/null", O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        bk_fail("cannot open %s: %s", in_path, strerror(errno));
        return -1;
    }
    int devnull = out_fd == -2 ? open("/dev/null", O_WRONLY | O_CLOEXEC) : -1;
    struct stat rst = {0};
    bool reads = w && w->reads && stat(w->reads, &rst) == 0;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        bk_fail("fork: %s", strerror(errno));
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
        if (bk_interrupted)
            kill(pid, SIGTERM);
        if (pg && w && w->grows) {
            struct stat st;
            if (stat(w->grows, &st) == 0)
                bk_progress_show(pg, (uint64_t)st.st_size, 0, false);
        } else if (pg && reads) {
            bk_progress_show(pg, child_offset(pid, rst.st_dev, rst.st_ino), (uint64_t)rst.st_size,
                             false);
        } else if (pg) {
            bk_progress_show(pg, 0, 0, false);
        }
        usleep(50 * 1000);
    }
    if (status == -1 || WIFSIGNALED(status)) {
        bk_progress_clear(pg);
        if (!bk_interrupted)
            bk_fail("%s was killed by signal %d", argv[0],
                    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        return -1;
    }
    return WEXITSTATUS(status);
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
        if (nx_cli_is_help(a)) {
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
        bk_fail("database.path is :memory:, which no other process can read: nothing to back up "
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
        bk_fail("--output %s is the database itself (database.path): choose another file",
                o.output);
        goto cleanup;
    }
    snprintf(tmp, sizeof(tmp), "%s.partial-%d", o.output, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        bk_fail("cannot create %s: %s", tmp, strerror(errno));
        tmp[0] = '\0';
        goto cleanup;
    }
    close(fd);
    catch_signals();
    int done = s->kind == NX_DBK_POSTGRESQL ? bk_pg_backup(s, tmp)
               : s->kind == NX_DBK_MYSQL    ? bk_mysql_backup(s, tmp)
                                            : bk_sqlite_backup(s, tmp);
    if (bk_interrupted) {
        bk_fail("interrupted: no archive written");
        rc = EX_INTERRUPTED;
        goto cleanup;
    }
    if (done != NX_OK)
        goto cleanup;
    if (fsync_path(tmp, O_RDONLY) != NX_OK || rename(tmp, o.output) != 0) {
        bk_fail("cannot write %s: %s", o.output, strerror(errno));
        goto cleanup;
    }
    tmp[0] = '\0';
    fsync_dir_of(o.output);
    char hex[65];
    bk_progress pg;
    bk_progress_init(&pg, "checksum");
    int summed = file_sha256(o.output, hex, &pg);
    bk_progress_clear(&pg);
    if (summed != NX_OK) {
        bk_fail("cannot read back %s: %s", o.output, strerror(errno));
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
        bk_fail("cannot read %s: %s", path, strerror(errno));
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
    bk_fail("%s is not an archive of nexus backup: neither a SQLite database, a pg_dump custom "
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
        bk_fail("%s is the database itself (database.path): nothing to restore", o.archive);
        goto cleanup;
    }
    catch_signals();
    nx_db_kind kind;
    if (archive_kind(o.archive, &kind) != NX_OK)
        goto cleanup;
    bk_progress pg;
    int sum = check_checksum(o.archive, &pg);
    if (sum < 0)
        goto cleanup;
    if (sum == 0 && o.verify) {
        bk_fail("no checksum file %s.sha256 beside the archive: it cannot be verified", o.archive);
        goto cleanup;
    }
    if (sum == 0)
        fprintf(stderr,
                "nexus: warning: no checksum file %s.sha256: the archive is restored "
                "unchecked\n",
                o.archive);
    char what[200] = "";
    int entries = 0;
    int opened = kind == NX_DBK_SQLITE       ? bk_sqlite_verify(o.archive, what, sizeof(what))
                 : kind == NX_DBK_POSTGRESQL ? bk_pg_verify(o.archive, &entries)
                                             : bk_mysql_verify(o.archive);
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
        bk_fail("%s is %s, but the configured database is %s (database.type): nothing restored",
                o.archive, what, kind_name(s->kind));
        goto cleanup;
    }
    int done = kind == NX_DBK_POSTGRESQL ? bk_pg_restore(s, o.archive, o.force)
               : kind == NX_DBK_MYSQL    ? bk_mysql_restore(s, o.archive, o.force)
                                         : bk_sqlite_restore(s, o.archive, o.force);
    if (bk_interrupted) {
        bk_fail("interrupted%s", kind == NX_DBK_MYSQL ? ": the database may be partly restored"
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
