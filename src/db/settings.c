/*
 * settings.c - the database settings from database.* and database.url.
 *
 * database.url (or DATABASE_URL) is written the way SQLAlchemy users write it, and wins
 * over the separate keys when set:
 *
 *   postgresql://user:password@host:5432/name?sslmode=disable   (also postgres://, +driver)
 *   mysql://user:password@host:3306/name                        (also mariadb://, +driver)
 *   sqlite:///relative/path.db   sqlite:////absolute/path.db   sqlite:///:memory:
 *
 * User, password and name are percent-decoded; a host in brackets is an IPv6 address; a
 * PostgreSQL host may also be given as ?host=/socket/dir.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/util.h"
#include "db/db_impl.h"

static char *dup_decoded(const char *p, size_t n)
{
    char *out = nx_xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '%' && i + 2 < n && isxdigit((unsigned char)p[i + 1]) &&
            isxdigit((unsigned char)p[i + 2])) {
            char hex[3] = {p[i + 1], p[i + 2], 0};
            out[o++] = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            out[o++] = p[i];
        }
    }
    out[o] = '\0';
    return out;
}

static void set(char **field, char *value)
{
    free(*field);
    *field = value;
}

/* The scheme up to "://", without a "+driver" suffix; NX_ERR when unknown. */
static int scheme_kind(const char *url, size_t n, nx_db_kind *kind)
{
    size_t base = 0;
    while (base < n && url[base] != '+')
        base++;
    struct {
        const char *name;
        nx_db_kind kind;
    } known[] = {
        {"postgresql", NX_DBK_POSTGRESQL}, {"postgres", NX_DBK_POSTGRESQL},
        {"mysql", NX_DBK_MYSQL},           {"mariadb", NX_DBK_MYSQL},
        {"sqlite", NX_DBK_SQLITE},         {"sqlite3", NX_DBK_SQLITE},
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strlen(known[i].name) == base && strncasecmp(url, known[i].name, base) == 0) {
            *kind = known[i].kind;
            return NX_OK;
        }
    }
    return NX_ERR;
}

int nx_db_parse_url(nx_db_settings *s, const char *url, char *err, size_t errlen)
{
    const char *sep = strstr(url, "://");
    nx_db_kind kind;
    if (!sep || scheme_kind(url, (size_t)(sep - url), &kind) != NX_OK) {
        snprintf(err, errlen,
                 "expected postgresql://user:password@host:port/name, mysql://..., or "
                 "sqlite:///path.db");
        return NX_ERR;
    }
    s->kind = kind;
    const char *rest = sep + 3;
    if (kind == NX_DBK_SQLITE) {
        /* sqlite:///rel.db -> "rel.db"; sqlite:////abs.db -> "/abs.db"; sqlite:// -> memory */
        if (*rest == '\0') {
            set(&s->path, nx_xstrdup(":memory:"));
            return NX_OK;
        }
        if (*rest != '/') {
            snprintf(err, errlen,
                     "a SQLite URL has no host: write sqlite:///relative.db or "
                     "sqlite:////absolute/path.db");
            return NX_ERR;
        }
        rest++;
        const char *q = strchr(rest, '?');
        size_t n = q ? (size_t)(q - rest) : strlen(rest);
        if (n == 0) {
            set(&s->path, nx_xstrdup(":memory:"));
            return NX_OK;
        }
        set(&s->path, dup_decoded(rest, n));
        return NX_OK;
    }
    const char *path = strchr(rest, '/');
    const char *query = strchr(rest, '?');
    if (query && (!path || query < path))
        path = NULL;
    const char *auth_end = path ? path : query ? query : rest + strlen(rest);
    const char *at = NULL;
    for (const char *p = rest; p < auth_end; p++)
        if (*p == '@')
            at = p; /* the last @: a password may hold one, percent-encoded or not */
    const char *host = rest;
    if (at) {
        const char *colon = memchr(rest, ':', (size_t)(at - rest));
        size_t ulen = colon ? (size_t)(colon - rest) : (size_t)(at - rest);
        set(&s->user, dup_decoded(rest, ulen));
        if (colon)
            set(&s->password, dup_decoded(colon + 1, (size_t)(at - colon - 1)));
        host = at + 1;
    }
    const char *host_end = auth_end;
    const char *port = NULL;
    if (*host == '[') {
        const char *close = memchr(host, ']', (size_t)(auth_end - host));
        if (!close) {
            snprintf(err, errlen, "an IPv6 host must be closed by ']'");
            return NX_ERR;
        }
        if (close + 1 < auth_end && close[1] == ':')
            port = close + 2;
        set(&s->host, dup_decoded(host + 1, (size_t)(close - host - 1)));
    } else {
        const char *colon = memchr(host, ':', (size_t)(auth_end - host));
        if (colon) {
            port = colon + 1;
            host_end = colon;
        }
        if (host_end > host)
            set(&s->host, dup_decoded(host, (size_t)(host_end - host)));
    }
    s->port = kind == NX_DBK_MYSQL ? 3306 : 5432;
    if (port && port < auth_end) {
        char *end;
        long v = strtol(port, &end, 10);
        if (end != auth_end || v < 1 || v > 65535) {
            snprintf(err, errlen, "the port must be a number from 1 to 65535");
            return NX_ERR;
        }
        s->port = (int)v;
    }
    if (path) {
        const char *name = path + 1;
        const char *name_end = query ? query : name + strlen(name);
        if (name_end > name)
            set(&s->name, dup_decoded(name, (size_t)(name_end - name)));
    }
    if (query) {
        /* ?host=/run/postgresql names a socket directory, as libpq allows; the rest goes
         * to the driver as it is. */
        const char *h = strstr(query + 1, "host=");
        if (h && (h == query + 1 || h[-1] == '&')) {
            const char *e = strchr(h, '&');
            size_t n = e ? (size_t)(e - h - 5) : strlen(h + 5);
            set(&s->host, dup_decoded(h + 5, n));
        }
        set(&s->options, nx_xstrdup(query + 1));
    }
    return NX_OK;
}

static const char *get(const nx_config *cfg, const char *key, const char **src)
{
    const char *v = nx_config_get(cfg, key, src);
    return v ? v : "";
}

static uint64_t get_ms(const nx_config *cfg, const char *key)
{
    uint64_t ms = 0;
    const char *src;
    nx_parse_duration_ms(get(cfg, key, &src), &ms);
    return ms;
}

static bool get_bool(const nx_config *cfg, const char *key)
{
    const char *src;
    const char *v = get(cfg, key, &src);
    return strcmp(v, "true") == 0 || strcmp(v, "yes") == 0 || strcmp(v, "on") == 0 ||
           strcmp(v, "1") == 0;
}

int nx_db_settings_load(nx_db_settings *s, const nx_config *cfg, char *err, size_t errlen)
{
    const char *src;
    memset(s, 0, sizeof(*s));
    const char *type = get(cfg, "database.type", &src);
    s->kind = strcmp(type, "postgresql") == 0 ? NX_DBK_POSTGRESQL
              : strcmp(type, "mysql") == 0    ? NX_DBK_MYSQL
                                              : NX_DBK_SQLITE;
    s->host = nx_xstrdup(get(cfg, "database.host", &src));
    const char *port_src = "";
    s->port = atoi(get(cfg, "database.port", &port_src));
    if (s->kind == NX_DBK_MYSQL && strcmp(port_src, "default") == 0)
        s->port = 3306;
    s->name = nx_xstrdup(get(cfg, "database.name", &src));
    s->user = nx_xstrdup(get(cfg, "database.user", &src));
    s->password = nx_xstrdup(get(cfg, "database.password", &src));
    s->path = nx_xstrdup(get(cfg, "database.path", &src));
    s->options = nx_xstrdup("");
    s->pool_size = atoi(get(cfg, "database.pool_size", &src));
    s->max_overflow = atoi(get(cfg, "database.max_overflow", &src));
    s->pool_timeout_ms = get_ms(cfg, "database.pool_timeout");
    s->pool_recycle_ms = get_ms(cfg, "database.pool_recycle");
    s->pre_ping = get_bool(cfg, "database.pool_pre_ping");
    s->statement_timeout_ms = get_ms(cfg, "database.statement_timeout");
    s->application_name = nx_xstrdup(get(cfg, "database.application_name", &src));
    s->auto_migrate = get_bool(cfg, "database.auto_migrate");

    const char *url = get(cfg, "database.url", &src);
    if (*url) {
        char why[200];
        if (nx_db_parse_url(s, url, why, sizeof(why)) != NX_OK) {
            snprintf(err, errlen, "%s: database.url: %s", src, why);
            return NX_ERR;
        }
    }
    if (s->kind != NX_DBK_SQLITE && !*s->host) {
        if (!*url)
            nx_config_get(cfg, "database.host", &src);
        snprintf(err, errlen, "%s: database.host is empty; a %s database needs a server", src,
                 s->kind == NX_DBK_MYSQL ? "mysql" : "postgresql");
        return NX_ERR;
    }
    if (s->kind == NX_DBK_SQLITE && !*s->path) {
        nx_config_get(cfg, "database.path", &src);
        snprintf(err, errlen, "%s: database.path is empty; SQLite needs a file", src);
        return NX_ERR;
    }
    return NX_OK;
}

void nx_db_settings_free(nx_db_settings *s)
{
    free(s->host);
    free(s->name);
    free(s->user);
    free(s->password);
    free(s->path);
    free(s->options);
    free(s->application_name);
    memset(s, 0, sizeof(*s));
}
