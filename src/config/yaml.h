/*
 * config/yaml.h - reading a YAML config file into (dotted key, value, line) entries.
 *
 * Nested mappings become dotted keys ("cache: {redis: {host: x}}" -> "cache.redis.host");
 * a sequence of scalars becomes one comma-separated value. "${VAR}" and "${VAR:-default}"
 * are expanded inside scalar values. Typing and validation are the schema's job
 * (config.c); this file only knows YAML.
 */
#ifndef NX_CONFIG_YAML_H
#define NX_CONFIG_YAML_H

#include <stdbool.h>
#include <stddef.h>

typedef struct nx_yaml_entry {
    char *key;   /* dotted path */
    char *value; /* scalar text after ${} expansion */
    int line;    /* 1-based line of the value */
    int is_map;  /* 1: an empty mapping (a section with nothing in it); 2: a YAML null */
} nx_yaml_entry;

typedef struct nx_yaml_doc {
    nx_yaml_entry *entries;
    size_t n;
} nx_yaml_doc;

/*
 * Reads path into doc. Returns 0, or -1 with a message in err naming path:line and the
 * problem (unreadable file, YAML syntax, a mapping where a value belongs, an unset ${VAR}
 * without a default).
 */
int nx_yaml_load(const char *path, nx_yaml_doc *doc, char *err, size_t errlen);

void nx_yaml_free(nx_yaml_doc *doc);

/*
 * Expands ${VAR} and ${VAR:-default} in s (an empty VAR counts as unset). Returns a new
 * string the caller frees, or NULL with err naming where (file:line) and the variable.
 */
char *nx_expand_vars(const char *s, const char *where, char *err, size_t errlen);

/* Whether an expansion since the last nx_expand_forget() looked up the variable name. */
bool nx_expand_referenced(const char *name, size_t len);
void nx_expand_forget(void);

#endif
