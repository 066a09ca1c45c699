/*
 * response.c - whole responses in the cache, invalidated by key, prefix or tag.
 *
 * An entry holds the status, the content type, the generation of each of its tags when it
 * was stored, and the body:
 *
 *   NXR1 <status> <ntags>\n  (<tag>\t<generation>\n)*  <content type>\n  <body>
 *
 * A tag's generation lives under nx:tag:<tag>; invalidating the tag increments it, which
 * makes every entry recorded with the old number stale at once, in every worker and (with
 * Redis) every instance, without finding them. A generation that is missing (first use, an
 * eviction, a Redis restart) starts from the clock in microseconds, never from a number an
 * old entry could hold.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cache_impl.h"
#include "http/exchange.h"

#define TAGS_MAX 16
#define TAG_MAX 100

static const char *tag_key(nx_req *req, const char *tag)
{
    return nx_arena_printf(req->arena, "nx:tag:%s", tag);
}

/* The current generation of tag, made when missing; -1 when the cache cannot say. */
static int64_t tag_gen(nx_req *req, const char *tag, bool create)
{
    nx_str v;
    const char *key = tag_key(req, tag);
    if (nx_cache_get(req, key, &v))
        return strtoll(v.ptr, NULL, 10);
    if (!create)
        return -1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t seed = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000, gen;
    return nx_cache_incr(req, key, seed, NX_CACHE_FOREVER, &gen) == NX_OK ? gen : -1;
}

static bool valid_tag(const char *t)
{
    size_t n = strlen(t);
    return n > 0 && n <= TAG_MAX && !strpbrk(t, "\t\n");
}

int nx_cache_store(nx_req *req, const nx_res *res, const char *key, uint64_t ttl_ms,
                   const char *const *tags)
{
    if (res->file_fd >= 0 || !res->set)
        return NX_ERR; /* a file body or no answer yet: nothing to keep */
    size_t ntags = 0;
    while (tags && tags[ntags])
        if (!valid_tag(tags[ntags++]) || ntags > TAGS_MAX)
            return NX_ERR;
    const char *ctype = res->content_type ? res->content_type : "";
    if (strchr(ctype, '\n'))
        return NX_ERR;
    /* The header, then the body behind it. */
    size_t cap = 64 + strlen(ctype) + ntags * (TAG_MAX + 24);
    char *head = nx_arena_alloc(req->arena, cap);
    int n = snprintf(head, cap, "NXR1 %d %zu\n", res->status, ntags);
    for (size_t i = 0; i < ntags; i++) {
        int64_t gen = tag_gen(req, tags[i], true);
        if (gen < 0)
            return NX_ERR;
        n += snprintf(head + n, cap - (size_t)n, "%s\t%lld\n", tags[i], (long long)gen);
    }
    n += snprintf(head + n, cap - (size_t)n, "%s\n", ctype);
    size_t total = (size_t)n + res->body_len;
    char *entry = nx_arena_alloc(req->arena, total);
    memcpy(entry, head, (size_t)n);
    if (res->body_len)
        memcpy(entry + n, res->body, res->body_len);
    return nx_cache_set(req, key, entry, total, ttl_ms);
}

bool nx_cache_serve(nx_req *req, nx_res *res, const char *key)
{
    nx_str v;
    if (!nx_cache_get(req, key, &v))
        return false;
    char *p = (char *)v.ptr, *end = p + v.len;
    int status;
    size_t ntags;
    char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl || sscanf(p, "NXR1 %d %zu", &status, &ntags) != 2 || ntags > TAGS_MAX)
        return false; /* not an entry of this format: a miss */
    p = nl + 1;
    for (size_t i = 0; i < ntags; i++) {
        nl = memchr(p, '\n', (size_t)(end - p));
        char *tab = nl ? memchr(p, '\t', (size_t)(nl - p)) : NULL;
        if (!tab)
            return false;
        *tab = '\0';
        *nl = '\0';
        if (tag_gen(req, p, false) != strtoll(tab + 1, NULL, 10))
            return false; /* the tag was invalidated since */
        p = nl + 1;
    }
    nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl)
        return false;
    *nl = '\0';
    nx_res_status(res, status);
    nx_res_body_static(res, *p ? p : "application/octet-stream", nl + 1, (size_t)(end - (nl + 1)));
    return true;
}

int nx_cache_invalidate_tag(nx_req *req, const char *tag)
{
    if (!tag || !valid_tag(tag))
        return NX_ERR;
    int64_t gen;
    return nx_cache_incr(req, tag_key(req, tag), 1, NX_CACHE_FOREVER, &gen);
}
