/*
 * yaml.c - libyaml's event stream folded into flat entries.
 *
 * The walk keeps a stack of the mapping keys above the current node; a scalar in value
 * position yields one entry for the path down to it. Aliases and anchors are refused:
 * a config file has no need of them, and they are how "billion laughs" files blow up.
 * A plain null (empty, "~", "null") is reported as such: it leaves the key at its default.
 * A key written twice in one mapping is refused with both lines: YAML leaves the case
 * undefined and most loaders keep the last silently, which hides the edit that was meant.
 */
#include "config/yaml.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "core/util.h"

#define MAX_DEPTH 16

/* The keys one open mapping has given so far, with their lines. */
typedef struct seen_keys {
    char **names;
    int *lines;
    int n;
} seen_keys;

typedef struct walker {
    const char *path;
    nx_yaml_doc *doc;
    char *keys[MAX_DEPTH];   /* key of each open mapping level; NULL while awaiting a key */
    int lines[MAX_DEPTH];    /* where each open mapping started */
    int children[MAX_DEPTH]; /* values seen in each open mapping */
    seen_keys seen[MAX_DEPTH];
    int depth; /* open mappings */
    char *seq; /* sequence being joined, or NULL */
    int seq_line;
    char *err;
    size_t errlen;
} walker;

static char *joined_key(walker *w)
{
    size_t len = 0;
    for (int i = 0; i < w->depth; i++)
        len += strlen(w->keys[i]) + 1;
    char *k = nx_xmalloc(len + 1), *p = k;
    for (int i = 0; i < w->depth; i++) {
        size_t n = strlen(w->keys[i]);
        memcpy(p, w->keys[i], n);
        p += n;
        *p++ = '.';
    }
    p[p == k ? 0 : -1] = '\0';
    return k;
}

static void seen_clear(seen_keys *k)
{
    for (int i = 0; i < k->n; i++)
        free(k->names[i]);
    free(k->names);
    free(k->lines);
    memset(k, 0, sizeof(*k));
}

/*
 * Records key in the innermost open mapping; false (err set, naming the dotted key and
 * both lines) when that mapping gave it already.
 */
static bool note_key(walker *w, const char *key, int line)
{
    seen_keys *k = &w->seen[w->depth - 1];
    for (int i = 0; i < k->n; i++) {
        if (strcmp(k->names[i], key) != 0)
            continue;
        char prefix[512] = "";
        size_t used = 0;
        for (int d = 0; d < w->depth - 1 && used < sizeof(prefix); d++)
            used += (size_t)snprintf(prefix + used, sizeof(prefix) - used, "%s.", w->keys[d]);
        snprintf(w->err, w->errlen, "%s:%d: %s%s is given twice (first on line %d); keep one",
                 w->path, line, prefix, key, k->lines[i]);
        return false;
    }
    k->names = nx_xrealloc(k->names, (size_t)(k->n + 1) * sizeof(*k->names));
    k->lines = nx_xrealloc(k->lines, (size_t)(k->n + 1) * sizeof(*k->lines));
    k->names[k->n] = nx_xstrdup(key);
    k->lines[k->n++] = line;
    return true;
}

/* Names that ${} expansions looked up, so the unknown-variable warning can spare them. */
static char **referenced;
static size_t nreferenced;

static void remember(const char *name)
{
    for (size_t i = 0; i < nreferenced; i++)
        if (strcmp(referenced[i], name) == 0)
            return;
    referenced = nx_xrealloc(referenced, (nreferenced + 1) * sizeof(*referenced));
    referenced[nreferenced++] = nx_xstrdup(name);
}

bool nx_expand_referenced(const char *name, size_t len)
{
    for (size_t i = 0; i < nreferenced; i++)
        if (strlen(referenced[i]) == len && strncmp(referenced[i], name, len) == 0)
            return true;
    return false;
}

void nx_expand_forget(void)
{
    while (nreferenced)
        free(referenced[--nreferenced]);
    free(referenced);
    referenced = NULL;
}

char *nx_expand_vars(const char *s, const char *where, char *err, size_t errlen)
{
    size_t cap = strlen(s) + 64, len = 0;
    char *out = nx_xmalloc(cap);
    while (*s) {
        const char *piece = NULL;
        size_t plen = 0;
        const char *close = NULL;
        if (s[0] == '$' && s[1] == '{' && (close = strchr(s + 2, '}')) == NULL) {
            /* "${NAME" without its brace is a typo, not text to keep. */
            snprintf(err, errlen, "%s: malformed ${...} reference: no closing '}'", where);
            free(out);
            return NULL;
        }
        if (s[0] == '$' && s[1] == '{') {
            const char *name = s + 2;
            const char *dflt = strstr(name, ":-");
            size_t nlen = (size_t)((dflt && dflt < close ? dflt : close) - name);
            char var[256];
            if (nlen == 0 || nlen >= sizeof(var)) {
                snprintf(err, errlen, "%s: malformed ${...} reference", where);
                free(out);
                return NULL;
            }
            memcpy(var, name, nlen);
            var[nlen] = '\0';
            remember(var);
            const char *v = getenv(var);
            if (v && *v) {
                piece = v;
                plen = strlen(v);
            } else if (dflt && dflt < close) {
                piece = dflt + 2;
                plen = (size_t)(close - piece);
            } else {
                snprintf(err, errlen, "%s: ${%s} is not set (set it, or write ${%s:-default})",
                         where, var, var);
                free(out);
                return NULL;
            }
            s = close + 1;
        } else {
            piece = s;
            plen = 1;
            s++;
        }
        if (len + plen + 1 > cap) {
            cap = (len + plen + 1) * 2;
            out = nx_xrealloc(out, cap);
        }
        memcpy(out + len, piece, plen);
        len += plen;
    }
    out[len] = '\0';
    return out;
}

static char *expand(walker *w, const char *s, int line)
{
    char where[600];
    snprintf(where, sizeof(where), "%s:%d", w->path, line);
    return nx_expand_vars(s, where, w->err, w->errlen);
}

static void add_entry(walker *w, char *value, int line, int is_map)
{
    nx_yaml_doc *d = w->doc;
    d->entries = nx_xrealloc(d->entries, (d->n + 1) * sizeof(*d->entries));
    d->entries[d->n].key = joined_key(w);
    d->entries[d->n].value = value;
    d->entries[d->n].line = line;
    d->entries[d->n].is_map = is_map;
    d->n++;
    for (int i = 0; i < w->depth; i++)
        w->children[i]++;
}

/* Handles one event; returns false (err set) to stop. */
static bool on_event(walker *w, const yaml_event_t *ev)
{
    int line = (int)ev->start_mark.line + 1;
    bool want_key = w->depth > 0 && w->keys[w->depth - 1] == NULL;
    const yaml_char_t *anchor =
        ev->type == YAML_SCALAR_EVENT           ? ev->data.scalar.anchor
        : ev->type == YAML_MAPPING_START_EVENT  ? ev->data.mapping_start.anchor
        : ev->type == YAML_SEQUENCE_START_EVENT ? ev->data.sequence_start.anchor
                                                : NULL;
    if (anchor) {
        snprintf(w->err, w->errlen,
                 "%s:%d: YAML anchors and aliases are not supported in config files", w->path,
                 line);
        return false;
    }
    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        snprintf(w->err, w->errlen, "%s:%d: YAML aliases are not supported in config files",
                 w->path, line);
        return false;
    case YAML_SCALAR_EVENT: {
        const char *text = (const char *)ev->data.scalar.value;
        if (w->seq) {
            char *v = expand(w, text, line);
            if (!v)
                return false;
            size_t a = strlen(w->seq), b = strlen(v);
            w->seq = nx_xrealloc(w->seq, a + b + 2);
            if (a)
                w->seq[a++] = ',';
            memcpy(w->seq + a, v, b + 1);
            free(v);
            return true;
        }
        if (w->depth == 0) {
            snprintf(w->err, w->errlen, "%s:%d: the file must be a mapping of sections", w->path,
                     line);
            return false;
        }
        if (want_key) {
            if (!note_key(w, text, line))
                return false;
            w->keys[w->depth - 1] = nx_xstrdup(text);
            return true;
        }
        bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        if (plain && (!*text || strcmp(text, "~") == 0 || strcasecmp(text, "null") == 0)) {
            /* null: "database:" with every key commented out, or "name: ~" */
            add_entry(w, nx_xstrdup(""), line, 2);
            free(w->keys[w->depth - 1]);
            w->keys[w->depth - 1] = NULL;
            return true;
        }
        char *v = expand(w, text, line);
        if (!v)
            return false;
        add_entry(w, v, line, 0);
        free(w->keys[w->depth - 1]);
        w->keys[w->depth - 1] = NULL;
        return true;
    }
    case YAML_SEQUENCE_START_EVENT:
        if (w->seq || w->depth == 0 || want_key) {
            snprintf(w->err, w->errlen, "%s:%d: a list is only allowed as a key's value", w->path,
                     line);
            return false;
        }
        w->seq = nx_xstrdup("");
        w->seq_line = line;
        return true;
    case YAML_SEQUENCE_END_EVENT:
        add_entry(w, w->seq, w->seq_line, 0);
        w->seq = NULL;
        free(w->keys[w->depth - 1]);
        w->keys[w->depth - 1] = NULL;
        return true;
    case YAML_MAPPING_START_EVENT:
        if (w->seq) {
            snprintf(w->err, w->errlen, "%s:%d: a list may only hold plain values", w->path, line);
            return false;
        }
        if (want_key) {
            snprintf(w->err, w->errlen, "%s:%d: a key must be a plain value", w->path, line);
            return false;
        }
        if (w->depth == MAX_DEPTH) {
            snprintf(w->err, w->errlen, "%s:%d: nested deeper than %d levels", w->path, line,
                     MAX_DEPTH);
            return false;
        }
        w->lines[w->depth] = line;
        w->children[w->depth] = 0;
        seen_clear(&w->seen[w->depth]);
        w->keys[w->depth++] = NULL;
        return true;
    case YAML_MAPPING_END_EVENT:
        w->depth--;
        seen_clear(&w->seen[w->depth]);
        /* An empty mapping still names a key, which the schema must know. */
        if (w->depth > 0 && w->children[w->depth] == 0)
            add_entry(w, nx_xstrdup(""), w->lines[w->depth], 1);
        if (w->depth > 0) {
            free(w->keys[w->depth - 1]);
            w->keys[w->depth - 1] = NULL;
        }
        return true;
    default: return true;
    }
}

int nx_yaml_load(const char *path, nx_yaml_doc *doc, char *err, size_t errlen)
{
    memset(doc, 0, sizeof(*doc));
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot be read: %s", path, strerror(errno));
        return -1;
    }
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    walker w = {.path = path, .doc = doc, .err = err, .errlen = errlen};
    int rc = 0;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            snprintf(err, errlen, "%s:%d: invalid YAML: %s", path,
                     (int)parser.problem_mark.line + 1,
                     parser.problem ? parser.problem : "syntax error");
            rc = -1;
            break;
        }
        bool done = ev.type == YAML_STREAM_END_EVENT;
        bool ok = on_event(&w, &ev);
        yaml_event_delete(&ev);
        if (!ok) {
            rc = -1;
            break;
        }
        if (done)
            break;
    }
    for (int i = 0; i < MAX_DEPTH; i++) {
        free(w.keys[i]);
        seen_clear(&w.seen[i]);
    }
    free(w.seq);
    yaml_parser_delete(&parser);
    fclose(f);
    if (rc != 0)
        nx_yaml_free(doc);
    return rc;
}

void nx_yaml_free(nx_yaml_doc *doc)
{
    for (size_t i = 0; i < doc->n; i++) {
        free(doc->entries[i].key);
        free(doc->entries[i].value);
    }
    free(doc->entries);
    memset(doc, 0, sizeof(*doc));
}
