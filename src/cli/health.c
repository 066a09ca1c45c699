/*
 * health.c - `nexus health`: is the server here alive? For container health checks.
 *
 * Reads the configuration as `nexus serve` would (so --host, --port, NEXUS_APP_PORT and the
 * file give the address), sends GET /health and exits 0 when it answers 200, 1 otherwise,
 * within three seconds. A server listening on every address (0.0.0.0, ::) is probed on
 * loopback. Images need no curl for their HEALTHCHECK. The production rules (secrets set,
 * no default credentials) are not applied: a probe needs the address only, and runs where
 * the server's secrets may not be mounted (a Kubernetes test pod, `docker exec`).
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config/config.h"
#include "core/util.h"

#define PROBE_MS 3000

static void usage(FILE *out)
{
    fprintf(out, "usage: nexus health [--host ADDR] [--port N] [--config FILE] [options]\n\n"
                 "GET /health on the configured (or given) address: exit 0 when it answers 200,\n"
                 "1 when it answers anything else or nothing within 3 s, 78 for a bad "
                 "configuration.\n");
}

static long ms_left(const struct timespec *until)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (until->tv_sec - now.tv_sec) * 1000 + (until->tv_nsec - now.tv_nsec) / 1000000;
    return ms > 0 ? ms : 0;
}

/* Waits for events on fd until the deadline: true when they came. */
static bool wait_for(int fd, short events, const struct timespec *until)
{
    struct pollfd p = {.fd = fd, .events = events};
    int rc;
    do
        rc = poll(&p, 1, (int)ms_left(until));
    while (rc < 0 && errno == EINTR);
    return rc > 0;
}

static int probe(const char *host, int port, char *why, size_t whylen)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += PROBE_MS / 1000;
    if (strcmp(host, "0.0.0.0") == 0 || *host == '\0')
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0 || strcmp(host, "[::]") == 0)
        host = "::1";
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int gai = getaddrinfo(host, portstr, &hints, &ai);
    if (gai != 0) {
        snprintf(why, whylen, "%s: %s", host, gai_strerror(gai));
        return NX_ERR;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = fd < 0 ? -1 : connect(fd, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (fd < 0 || (rc < 0 && errno != EINPROGRESS)) {
        snprintf(why, whylen, "connect to %s:%d: %s", host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NX_ERR;
    }
    int err = 0;
    socklen_t len = sizeof(err);
    if (!wait_for(fd, POLLOUT, &until) || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 ||
        err) {
        snprintf(why, whylen, "connect to %s:%d: %s", host, port,
                 err ? strerror(err) : "timed out");
        close(fd);
        return NX_ERR;
    }
    char req[256];
    int n = snprintf(req, sizeof(req),
                     "GET /health HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: nexus-health\r\n"
                     "Connection: close\r\n\r\n",
                     host, port);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        snprintf(why, whylen, "send: %s", strerror(errno));
        close(fd);
        return NX_ERR;
    }
    char buf[64];
    size_t got = 0;
    while (got < 12 && wait_for(fd, POLLIN, &until)) {
        ssize_t r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    int status = 0;
    if (got < 12 || sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
        snprintf(why, whylen, "%s:%d gave no HTTP answer within %d ms", host, port, PROBE_MS);
        return NX_ERR;
    }
    if (status != 200) {
        snprintf(why, whylen, "%s:%d answered /health with %d", host, port, status);
        return NX_ERR;
    }
    return NX_OK;
}

int nx_cmd_health(int argc, char **argv)
{
    if (nx_cli_wants_help(argc, argv, 2)) {
        usage(stdout);
        return 0;
    }
    nx_config cfg;
    nx_config_defaults(&cfg);
    cfg.skip_production_rules = true;
    if (nx_config_load(&cfg, argc, argv, 2) != NX_OK) {
        nx_config_free(&cfg);
        return NX_EX_CONFIG;
    }
    char why[256];
    int rc = probe(cfg.host, cfg.port, why, sizeof(why));
    if (rc != NX_OK)
        fprintf(stderr, "nexus health: %s\n", why);
    nx_config_free(&cfg);
    return rc == NX_OK ? 0 : 1;
}
