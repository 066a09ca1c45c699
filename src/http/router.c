/*
 * router.c - the route tree.
 *
 * Each node is one path segment. A node's children are literal segments (compared by
 * length, then bytes), at most one "{x:int}" child, at most one "{x}" child, and at most
 * one wildcard. Parameter names belong to the routes, not the nodes, so "/users/{id}" and
 * "/users/{uid}/posts" share a node and each route names its own values.
 */
#include "http/router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

enum { SEG_LIT, SEG_INT, SEG_ANY, SEG_WILD };

typedef struct endpoint {
    nx_route_info info;
    nx_handler_fn handler;
    char *names[NX_MAX_PARAMS];
    size_t nnames;
} endpoint;

typedef struct node {
    char *seg;
    size_t seg_len;
    struct node **lit;
    size_t nlit;
    struct node *p_int, *p_any, *wild;
    endpoint **eps;
    size_t neps;
} node;

struct nx_router {
    node root;
    endpoint **all; /* registration order */
    size_t nall;
};

nx_router *nx_router_new(void)
{
    return nx_xcalloc(1, sizeof(nx_router));
}

static void node_free(node *n)
{
    for (size_t i = 0; i < n->nlit; i++) {
        node_free(n->lit[i]);
        free(n->lit[i]);
    }
    free(n->lit);
    node *others[] = {n->p_int, n->p_any, n->wild};
    for (size_t i = 0; i < NX_ARRAY_LEN(others); i++) {
        if (others[i]) {
            node_free(others[i]);
            free(others[i]);
        }
    }
    free(n->eps);
    free(n->seg);
}

static void endpoint_free(endpoint *e)
{
    for (size_t j = 0; j < e->nnames; j++)
        free(e->names[j]);
    free((char *)e->info.method);
    free((char *)e->info.pattern);
    free((char *)e->info.owner);
    free(e);
}

void nx_router_free(nx_router *r)
{
    if (!r)
        return;
    node_free(&r->root);
    for (size_t i = 0; i < r->nall; i++)
        endpoint_free(r->all[i]);
    free(r->all);
    free(r);
}

static bool is_method_token(const char *m)
{
    if (strcmp(m, "*") == 0)
        return true;
    if (!*m)
        return false;
    for (const char *p = m; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || *p == '-' || *p == '_'))
            return false;
    return true;
}

/* Parses one pattern segment [s, e): its kind and, for parameters, its name. */
static int parse_seg(const char *s, const char *e, int *kind, const char **name, size_t *name_len,
                     bool last, char *err, size_t errlen)
{
    size_t len = (size_t)(e - s);
    if (len == 1 && s[0] == '*') {
        if (!last) {
            snprintf(err, errlen, "a wildcard must be the last segment");
            return NX_ERR;
        }
        *kind = SEG_WILD;
        *name = "*";
        *name_len = 1;
        return NX_OK;
    }
    if (len == 0 || s[0] != '{') {
        for (const char *p = s; p < e; p++) {
            if (*p == '{' || *p == '}') {
                snprintf(err, errlen, "'{' and '}' must enclose a whole segment");
                return NX_ERR;
            }
        }
        *kind = SEG_LIT;
        return NX_OK;
    }
    if (len < 3 || e[-1] != '}') {
        snprintf(err, errlen, "unclosed or empty parameter '%.*s'", (int)len, s);
        return NX_ERR;
    }
    const char *n = s + 1, *ne = e - 1;
    const char *colon = memchr(n, ':', (size_t)(ne - n));
    *kind = SEG_ANY;
    if (ne - n > 3 && memcmp(ne - 3, "...", 3) == 0) {
        if (!last) {
            snprintf(err, errlen, "a wildcard must be the last segment");
            return NX_ERR;
        }
        *kind = SEG_WILD;
        ne -= 3;
    } else if (colon) {
        const char *t = colon + 1;
        size_t tl = (size_t)(ne - t);
        if (tl == 3 && memcmp(t, "int", 3) == 0)
            *kind = SEG_INT;
        else if (!(tl == 3 && memcmp(t, "str", 3) == 0)) {
            snprintf(err, errlen, "unknown parameter type '%.*s' (expected int or str)", (int)tl,
                     t);
            return NX_ERR;
        }
        ne = colon;
    }
    if (ne == n) {
        snprintf(err, errlen, "parameter without a name");
        return NX_ERR;
    }
    for (const char *p = n; p < ne; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_')) {
            snprintf(err, errlen, "parameter names are letters, digits and '_': '%.*s'",
                     (int)(ne - n), n);
            return NX_ERR;
        }
    }
    *name = n;
    *name_len = (size_t)(ne - n);
    return NX_OK;
}

static node *child_for(node *n, int kind, const char *s, size_t len)
{
    node **slot = kind == SEG_INT ? &n->p_int : kind == SEG_ANY ? &n->p_any : &n->wild;
    if (kind == SEG_LIT) {
        for (size_t i = 0; i < n->nlit; i++)
            if (n->lit[i]->seg_len == len && memcmp(n->lit[i]->seg, s, len) == 0)
                return n->lit[i];
        node *c = nx_xcalloc(1, sizeof(*c));
        c->seg = nx_xmalloc(len + 1);
        memcpy(c->seg, s, len);
        c->seg[len] = '\0';
        c->seg_len = len;
        n->lit = nx_xrealloc(n->lit, (n->nlit + 1) * sizeof(*n->lit));
        n->lit[n->nlit++] = c;
        return c;
    }
    if (!*slot)
        *slot = nx_xcalloc(1, sizeof(node));
    return *slot;
}

int nx_router_add(nx_router *r, const char *method, const char *pattern, nx_handler_fn handler,
                  int flags, const char *owner, char *err, size_t errlen)
{
    if (!method || !is_method_token(method)) {
        snprintf(err, errlen, "invalid method '%s'", method ? method : "(null)");
        return NX_ERR;
    }
    if (!pattern || pattern[0] != '/') {
        snprintf(err, errlen, "pattern must start with '/'");
        return NX_ERR;
    }
    if (!handler) {
        snprintf(err, errlen, "handler is NULL");
        return NX_ERR;
    }
    endpoint *ep = nx_xcalloc(1, sizeof(*ep));
    node *n = &r->root;
    const char *p = pattern + 1;
    for (;;) {
        const char *e = strchr(p, '/');
        bool last = e == NULL;
        if (!e)
            e = p + strlen(p);
        int kind;
        const char *name = NULL;
        size_t name_len = 0;
        if (parse_seg(p, e, &kind, &name, &name_len, last, err, errlen) != NX_OK)
            goto fail;
        if (kind != SEG_LIT) {
            if (ep->nnames == NX_MAX_PARAMS) {
                snprintf(err, errlen, "more than %d parameters", NX_MAX_PARAMS);
                goto fail;
            }
            ep->names[ep->nnames] = nx_xmalloc(name_len + 1);
            memcpy(ep->names[ep->nnames], name, name_len);
            ep->names[ep->nnames][name_len] = '\0';
            ep->nnames++;
        }
        n = child_for(n, kind, p, (size_t)(e - p));
        if (last)
            break;
        p = e + 1;
    }
    for (size_t i = 0; i < n->neps; i++) {
        if (strcmp(n->eps[i]->info.method, method) == 0) {
            snprintf(err, errlen, "%s %s clashes with %s %s of %s", method, pattern, method,
                     n->eps[i]->info.pattern, n->eps[i]->info.owner);
            goto fail;
        }
    }
    ep->info.method = nx_xstrdup(method);
    ep->info.pattern = nx_xstrdup(pattern);
    ep->info.owner = nx_xstrdup(owner ? owner : "nexus");
    ep->info.flags = flags;
    ep->handler = handler;
    n->eps = nx_xrealloc(n->eps, (n->neps + 1) * sizeof(*n->eps));
    n->eps[n->neps++] = ep;
    r->all = nx_xrealloc(r->all, (r->nall + 1) * sizeof(*r->all));
    r->all[r->nall++] = ep;
    return NX_OK;
fail:
    for (size_t j = 0; j < ep->nnames; j++)
        free(ep->names[j]);
    free(ep);
    return NX_ERR;
}

static const endpoint *find_method(const node *n, const char *m, size_t ml)
{
    const endpoint *any = NULL;
    for (size_t i = 0; i < n->neps; i++) {
        const char *em = n->eps[i]->info.method;
        if (strlen(em) == ml && memcmp(em, m, ml) == 0)
            return n->eps[i];
        if (em[0] == '*')
            any = n->eps[i];
    }
    return any;
}

static bool is_int_seg(const char *s, size_t len)
{
    size_t i = len && s[0] == '-' ? 1 : 0;
    if (i == len || len - i > 19)
        return false;
    for (; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

typedef struct walk {
    const char *method;
    size_t method_len;
    bool any_method; /* second pass: any node with endpoints will do */
    nx_str vals[NX_MAX_PARAMS];
    size_t nvals;
} walk;

static const node *walk_node(const node *n, const char *p, const char *end, walk *w);

/* Continues below child: the node matching the rest of the path (after slash), or NULL. */
static const node *descend(const node *child, const char *slash, const char *end, walk *w)
{
    if (slash)
        return walk_node(child, slash + 1, end, w);
    bool usable = child->neps && (w->any_method || find_method(child, w->method, w->method_len));
    return usable ? child : NULL;
}

/* Matches segment [p, end) and the rest of the path below n. */
static const node *walk_node(const node *n, const char *p, const char *end, walk *w)
{
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *se = slash ? slash : end;
    size_t len = (size_t)(se - p);
    const node *found;

    for (size_t i = 0; i < n->nlit; i++) {
        const node *c = n->lit[i];
        if (c->seg_len == len && memcmp(c->seg, p, len) == 0) {
            if ((found = descend(c, slash, end, w)) != NULL)
                return found;
            break;
        }
    }
    if (w->nvals == NX_MAX_PARAMS)
        return NULL;
    size_t saved = w->nvals;
    if (n->p_int && is_int_seg(p, len)) {
        w->vals[w->nvals++] = (nx_str){p, len};
        if ((found = descend(n->p_int, slash, end, w)) != NULL)
            return found;
        w->nvals = saved;
    }
    if (n->p_any && len > 0) {
        w->vals[w->nvals++] = (nx_str){p, len};
        if ((found = descend(n->p_any, slash, end, w)) != NULL)
            return found;
        w->nvals = saved;
    }
    if (n->wild && n->wild->neps &&
        (w->any_method || find_method(n->wild, w->method, w->method_len))) {
        w->vals[w->nvals++] = (nx_str){p, (size_t)(end - p)};
        return n->wild;
    }
    return NULL;
}

typedef struct allow_list {
    char *buf;
    size_t len, pos;
    bool full; /* an entry did not fit: later ones are dropped too, so it stays a prefix */
} allow_list;

static void add_allow(allow_list *a, const char *m)
{
    size_t ml = strlen(m);
    /* Skip duplicates: GET may be registered on several matching routes. */
    for (const char *q = a->buf; a->pos && (q = strstr(q, m)) != NULL; q += ml)
        if ((q == a->buf || q[-1] == ' ') && (q[ml] == ',' || q[ml] == '\0'))
            return;
    size_t need = (a->pos ? 2 : 0) + ml;
    if (a->full || a->pos + need >= a->len) {
        a->full = true;
        return;
    }
    if (a->pos) {
        memcpy(a->buf + a->pos, ", ", 2);
        a->pos += 2;
    }
    memcpy(a->buf + a->pos, m, ml + 1);
    a->pos += ml;
}

static void allow_node(const node *n, allow_list *a, bool *get)
{
    for (size_t i = 0; i < n->neps; i++) {
        const char *m = n->eps[i]->info.method;
        if (m[0] == '*') {
            static const char *const all[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
            for (size_t j = 0; j < NX_ARRAY_LEN(all); j++)
                add_allow(a, all[j]);
            *get = true;
            continue;
        }
        add_allow(a, m);
        if (strcmp(m, "GET") == 0)
            *get = true;
    }
}

/* Adds the methods of every route whose pattern matches [p, end), whichever branch. */
static void collect_allow(const node *n, const char *p, const char *end, allow_list *a, bool *get)
{
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *se = slash ? slash : end;
    size_t len = (size_t)(se - p);
    const node *next[3] = {NULL, NULL, NULL};
    for (size_t i = 0; i < n->nlit; i++)
        if (n->lit[i]->seg_len == len && memcmp(n->lit[i]->seg, p, len) == 0)
            next[0] = n->lit[i];
    if (n->p_int && is_int_seg(p, len))
        next[1] = n->p_int;
    if (n->p_any && len > 0)
        next[2] = n->p_any;
    for (size_t i = 0; i < 3; i++) {
        if (!next[i])
            continue;
        if (slash)
            collect_allow(next[i], slash + 1, end, a, get);
        else
            allow_node(next[i], a, get);
    }
    if (n->wild)
        allow_node(n->wild, a, get);
}

static void build_allow(const nx_router *r, const char *path, size_t path_len, char *buf,
                        size_t len)
{
    if (len == 0)
        return;
    allow_list a = {.buf = buf, .len = len};
    buf[0] = '\0';
    bool get = false;
    collect_allow(&r->root, path + 1, path + path_len, &a, &get);
    if (get)
        add_allow(&a, "HEAD");
    add_allow(&a, "OPTIONS");
}

enum nx_match_result nx_router_match(const nx_router *r, const char *method, size_t method_len,
                                     const char *path, size_t path_len, nx_match *m, char *allow,
                                     size_t allow_len)
{
    if (path_len == 0 || path[0] != '/')
        return NX_MATCH_NOT_FOUND;
    walk w = {.method = method, .method_len = method_len};
    const char *p = path + 1, *end = path + path_len;
    const node *n = walk_node(&r->root, p, end, &w);
    const endpoint *ep = n ? find_method(n, method, method_len) : NULL;
    if (!n && method_len == 4 && memcmp(method, "HEAD", 4) == 0) {
        w = (walk){.method = "GET", .method_len = 3};
        n = walk_node(&r->root, p, end, &w);
        ep = n ? find_method(n, "GET", 3) : NULL;
    }
    if (!n) {
        w = (walk){.method = method, .method_len = method_len, .any_method = true};
        n = walk_node(&r->root, p, end, &w);
        if (!n)
            return NX_MATCH_NOT_FOUND;
        build_allow(r, path, path_len, allow, allow_len);
        if (method_len == 7 && memcmp(method, "OPTIONS", 7) == 0)
            return NX_MATCH_OPTIONS;
        return NX_MATCH_NO_METHOD;
    }
    m->handler = ep->handler;
    m->route = &ep->info;
    m->nparams = w.nvals < ep->nnames ? w.nvals : ep->nnames;
    for (size_t i = 0; i < m->nparams; i++) {
        m->params[i].name = ep->names[i];
        m->params[i].value = w.vals[i];
    }
    return NX_MATCH_FOUND;
}

static void remove_from_node(node *n, const char *owner)
{
    size_t kept = 0;
    for (size_t i = 0; i < n->neps; i++)
        if (strcmp(n->eps[i]->info.owner, owner) != 0)
            n->eps[kept++] = n->eps[i];
    n->neps = kept;
    for (size_t i = 0; i < n->nlit; i++)
        remove_from_node(n->lit[i], owner);
    node *others[] = {n->p_int, n->p_any, n->wild};
    for (size_t i = 0; i < NX_ARRAY_LEN(others); i++)
        if (others[i])
            remove_from_node(others[i], owner);
}

void nx_router_remove_owner(nx_router *r, const char *owner)
{
    remove_from_node(&r->root, owner);
    size_t kept = 0;
    for (size_t i = 0; i < r->nall; i++) {
        endpoint *e = r->all[i];
        if (strcmp(e->info.owner, owner) != 0)
            r->all[kept++] = e;
        else
            endpoint_free(e);
    }
    r->nall = kept;
}

void nx_router_each(const nx_router *r, void (*fn)(const nx_route_info *ri, void *arg), void *arg)
{
    for (size_t i = 0; i < r->nall; i++)
        fn(&r->all[i]->info, arg);
}
