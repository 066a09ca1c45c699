/*
 * slowdns.c - a resolver for tests, preloaded into the server (LD_PRELOAD).
 *
 * Host names ending in ".slow.test" take NEXUS_SLOWDNS_MS milliseconds (default 2000) and
 * then resolve to 127.0.0.1; names ending in ".fail.test" do not resolve; every other name
 * goes to the C library. Each lookup of a .test name is appended to NEXUS_SLOWDNS_LOG as
 * "NAME main" or "NAME thread": a lookup on a process's main thread is one that stopped
 * the worker's event loop.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n >= t && strcmp(s + n - t, tail) == 0;
}

static void note(const char *node)
{
    const char *path = getenv("NEXUS_SLOWDNS_LOG");
    if (!path)
        return;
    char line[512];
    int n = snprintf(line, sizeof(line), "%s %s\n", node, gettid() == getpid() ? "main" : "thread");
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    ssize_t w = write(fd, line, (size_t)n); /* O_APPEND: one line per write, whole */
    (void)w;
    close(fd);
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    gai_fn real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    if (node && ends_with(node, ".fail.test")) {
        note(node);
        return EAI_NONAME;
    }
    if (node && ends_with(node, ".slow.test")) {
        note(node);
        const char *ms = getenv("NEXUS_SLOWDNS_MS");
        long wait = ms ? atol(ms) : 2000;
        struct timespec ts = {wait / 1000, (wait % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0)
            ;
        struct addrinfo h = hints ? *hints : (struct addrinfo){0};
        h.ai_family = AF_INET;
        h.ai_flags &= ~AI_ADDRCONFIG;
        return real("127.0.0.1", service, &h, res);
    }
    return real(node, service, hints, res);
}
