/*
 * middleware.c - an array sorted by (priority, insertion), walked forwards then backwards.
 */
#include "http/middleware.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"

typedef struct hook {
    const void *owner;
    char *name;
    int priority;
    size_t seq;
    nx_before_fn before;
    nx_after_fn after;
} hook;

static hook *hooks;
static size_t nhooks;
static size_t next_seq;

void nx_middleware_add(const void *owner, const char *name, int priority, nx_before_fn before,
                       nx_after_fn after)
{
    hooks = nx_xrealloc(hooks, (nhooks + 1) * sizeof(*hooks));
    size_t i = nhooks;
    /* Insertion keeps the order stable: equal priorities stay in registration order. */
    while (i > 0 && hooks[i - 1].priority > priority) {
        hooks[i] = hooks[i - 1];
        i--;
    }
    hooks[i] = (hook){owner, nx_xstrdup(name ? name : "?"), priority, next_seq++, before, after};
    nhooks++;
}

void nx_middleware_remove_owner(const void *owner)
{
    size_t kept = 0;
    for (size_t i = 0; i < nhooks; i++) {
        if (hooks[i].owner == owner)
            free(hooks[i].name);
        else
            hooks[kept++] = hooks[i];
    }
    nhooks = kept;
}

size_t nx_middleware_before(nx_req *req, nx_res *res, bool *stopped)
{
    *stopped = false;
    for (size_t i = 0; i < nhooks; i++) {
        if (hooks[i].before && !hooks[i].before(req, res)) {
            *stopped = true;
            return i + 1;
        }
    }
    return nhooks;
}

void nx_middleware_after(nx_req *req, nx_res *res, size_t n)
{
    for (size_t i = n; i-- > 0;)
        if (hooks[i].after)
            hooks[i].after(req, res);
}
