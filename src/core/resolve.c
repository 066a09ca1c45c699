/*
 * resolve.c - getaddrinfo on a thread, waited for on an eventfd.
 *
 * One lookup is one detached thread with a small stack: connections are pooled, so names
 * are resolved when a connection opens, not per request, and a thread per lookup costs
 * less than keeping a resolver pool in every worker. A lookup abandoned at its deadline
 * keeps running until getaddrinfo returns (it cannot be stopped); it then frees itself.
 */
#include "core/resolve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nexus/nexus.h>

#include "core/coro.h"
#include "core/util.h"
#include "core/wait.h"

_Static_assert(NX_ADDR_LEN >= INET6_ADDRSTRLEN, "NX_ADDR_LEN holds any address");

struct nx_lookup {
    char *host;
    int fd;          /* eventfd: the answer is in */
    atomic_int refs; /* the thread and the waiter */
    int gai;         /* getaddrinfo's result */
    int err;         /* errno, for EAI_SYSTEM */
    nx_addrs addrs;
};

bool nx_host_is_numeric(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* getaddrinfo into out; returns its code (0 = found). */
static int lookup(const char *host, nx_addrs *out, int *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_ADDRCONFIG},
                    *res = NULL;
    out->n = 0;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    *err = errno;
    if (rc != 0)
        return rc;
    for (struct addrinfo *ai = res; ai && out->n < NX_RESOLVE_MAX; ai = ai->ai_next) {
        char text[NX_ADDR_LEN];
        if (getnameinfo(ai->ai_addr, ai->ai_addrlen, text, sizeof(text), NULL, 0, NI_NUMERICHOST) !=
            0)
            continue;
        bool seen = false;
        for (int i = 0; i < out->n && !seen; i++)
            seen = strcmp(out->addr[i], text) == 0;
        if (!seen)
            memcpy(out->addr[out->n++], text, sizeof(text));
    }
    freeaddrinfo(res);
    return out->n ? 0 : EAI_NONAME;
}

static void describe(const char *host, int gai, int err, char *why, size_t whylen)
{
    snprintf(why, whylen, "resolving %s: %s", host,
             gai == EAI_SYSTEM ? strerror(err) : gai_strerror(gai));
}

static void put(nx_lookup *l)
{
    if (atomic_fetch_sub(&l->refs, 1) == 1) {
        close(l->fd);
        free(l->host);
        free(l);
    }
}

static void *lookup_main(void *arg)
{
    nx_lookup *l = arg;
    l->gai = lookup(l->host, &l->addrs, &l->err);
    uint64_t one = 1;
    ssize_t w = write(l->fd, &one, sizeof(one)); /* publishes addrs: the reader reads fd */
    (void)w;
    put(l);
    return NULL;
}

nx_lookup *nx_lookup_start(const char *host)
{
    nx_lookup *l = nx_xcalloc(1, sizeof(*l));
    l->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l->fd < 0) {
        free(l);
        return NULL;
    }
    l->host = nx_xstrdup(host);
    atomic_init(&l->refs, 2);
    /* getaddrinfo with NSS modules needs more than a tiny stack. */
    if (nx_thread_detached(lookup_main, l, 256 * 1024) != 0) {
        atomic_init(&l->refs, 1);
        put(l);
        return NULL;
    }
    return l;
}

int nx_lookup_fd(const nx_lookup *l)
{
    return l->fd;
}

int nx_lookup_finish(nx_lookup *l, nx_addrs *out, char *why, size_t whylen)
{
    uint64_t v;
    ssize_t r = read(l->fd, &v, sizeof(v)); /* pairs with the thread's write */
    int rc = NX_ERR;
    if (r != (ssize_t)sizeof(v))
        snprintf(why, whylen, "resolving %s: the lookup did not finish", l->host);
    else if (l->gai != 0)
        describe(l->host, l->gai, l->err, why, whylen);
    else {
        *out = l->addrs;
        rc = NX_OK;
    }
    put(l);
    return rc;
}

void nx_lookup_abandon(nx_lookup *l)
{
    put(l);
}

int nx_resolve_now(const char *host, nx_addrs *out, char *why, size_t whylen)
{
    int err = 0, gai = lookup(host, out, &err);
    if (gai == 0)
        return NX_OK;
    describe(host, gai, err, why, whylen);
    return NX_ERR;
}

int nx_resolve(nx_loop *loop, const char *host, nx_addrs *out, uint64_t deadline, char *why,
               size_t whylen)
{
    if (nx_host_is_numeric(host)) {
        out->n = 1;
        snprintf(out->addr[0], sizeof(out->addr[0]), "%s", host);
        return NX_OK;
    }
    nx_lookup *l = nx_coro_current() ? nx_lookup_start(host) : NULL;
    if (!l)
        return nx_resolve_now(host, out, why, whylen);
    int ev = nx_wait_fd(loop, nx_lookup_fd(l), EPOLLIN, deadline);
    if (ev <= 0) {
        nx_lookup_abandon(l);
        if (ev == NX_ERR) {
            snprintf(why, whylen, "resolving %s: epoll refused the lookup's eventfd", host);
            return NX_ERR;
        }
        snprintf(why, whylen, "resolving %s: no answer in time", host);
        return NX_RESOLVE_LATE;
    }
    return nx_lookup_finish(l, out, why, whylen);
}
