/*
 * accesslog.c - buffered combined-format lines.
 */
#include "observe/accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"

#define BUF_MAX 65536
#define CHUNK 4096 /* PIPE_BUF: a write this size to a pipe is atomic */

static int fd = -1;
static char *path;
static char buf[BUF_MAX];
static size_t len;
static int64_t stamp_sec = -1;
static char stamp[40];

int nx_accesslog_open(const char *where)
{
    if (strcmp(where, "off") == 0) {
        fd = -1;
        return NX_OK;
    }
    if (strcmp(where, "stdout") == 0) {
        fd = 1;
        return NX_OK;
    }
    int f = open(where, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0)
        return NX_ERR;
    fd = f;
    free(path);
    path = nx_xstrdup(where);
    return NX_OK;
}

int nx_accesslog_reopen(void)
{
    if (!path)
        return NX_OK;
    int f = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0)
        return NX_ERR;
    dup2(f, fd);
    close(f);
    return NX_OK;
}

bool nx_accesslog_enabled(void)
{
    return fd >= 0;
}

void nx_accesslog_flush(nx_loop *loop, void *arg)
{
    size_t off = 0;
    while (off < len) {
        /* Cut at a line end within CHUNK so each write holds whole lines. */
        size_t n = len - off;
        if (n > CHUNK) {
            n = CHUNK;
            while (n > 0 && buf[off + n - 1] != '\n')
                n--;
            if (n == 0)
                n = CHUNK;
        }
        ssize_t w = write(fd, buf + off, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* a full disk must not stop serving; the lines are lost */
        off += (size_t)w;
    }
    len = 0;
}

/* Copies s with quotes, backslashes and control bytes escaped as nginx does (\xHH). */
static size_t put_escaped(char *out, size_t room, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n && o + 4 < room; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x7f) {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        } else {
            out[o++] = (char)c;
        }
    }
    return o;
}

void nx_accesslog_write(const nx_req *req, int status, uint64_t body_bytes, int64_t wall)
{
    if (fd < 0)
        return;
    if (wall != stamp_sec) {
        time_t t = (time_t)wall;
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(stamp, sizeof(stamp), "%d/%b/%Y:%H:%M:%S %z", &tm);
        stamp_sec = wall;
    }
    char line[4096];
    size_t n = (size_t)snprintf(line, sizeof(line), "%s - - [%s] \"",
                                nx_req_client_addr((nx_req *)req), stamp);
    if (req->method) {
        n += put_escaped(line + n, sizeof(line) - n, req->method, req->method_len);
        line[n++] = ' ';
        /* The target's '?' was overwritten when the path was NUL-terminated in place. */
        n += put_escaped(line + n, sizeof(line) - n, req->path, req->path_len);
        if (req->query[0]) {
            line[n++] = '?';
            n += put_escaped(line + n, sizeof(line) - n, req->query, strlen(req->query));
        }
        n += (size_t)snprintf(line + n, sizeof(line) - n, " HTTP/%d.%d", req->version / 10,
                              req->version % 10);
    } else {
        line[n++] = '-';
    }
    const char *ref = req->method ? nx_req_header(req, "Referer") : NULL;
    const char *ua = req->method ? nx_req_header(req, "User-Agent") : NULL;
    n += (size_t)snprintf(line + n, sizeof(line) - n, "\" %d %llu \"", status,
                          (unsigned long long)body_bytes);
    n += ref ? put_escaped(line + n, sizeof(line) - n - 8, ref, strlen(ref))
             : (size_t)snprintf(line + n, sizeof(line) - n, "-");
    n += (size_t)snprintf(line + n, sizeof(line) - n, "\" \"");
    n += ua ? put_escaped(line + n, sizeof(line) - n - 4, ua, strlen(ua))
            : (size_t)snprintf(line + n, sizeof(line) - n, "-");
    if (n > sizeof(line) - 3)
        n = sizeof(line) - 3;
    line[n++] = '"';
    line[n++] = '\n';
    if (len + n > BUF_MAX)
        nx_accesslog_flush(NULL, NULL);
    memcpy(buf + len, line, n);
    len += n;
}
