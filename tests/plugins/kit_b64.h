/*
 * kit_b64.h - base64 for the test plugins' JSON answers (binary values and blobs travel as
 * base64 strings). Header-only: each plugin is one shared object of its own.
 */
#ifndef NX_TEST_KIT_B64_H
#define NX_TEST_KIT_B64_H

#include <stdlib.h>

#include <jansson.h>

static const char b64_tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* p[0..n) as a JSON string in padded base64 (null when out of memory). */
static json_t *b64_json(const char *p, size_t n)
{
    char *s = malloc(4 * ((n + 2) / 3) + 1);
    if (!s)
        return json_null();
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)(unsigned char)p[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)(unsigned char)p[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)p[i + 2];
        s[o++] = b64_tab[v >> 18 & 63];
        s[o++] = b64_tab[v >> 12 & 63];
        s[o++] = i + 1 < n ? b64_tab[v >> 6 & 63] : '=';
        s[o++] = i + 2 < n ? b64_tab[v & 63] : '=';
    }
    json_t *j = json_stringn(s, o);
    free(s);
    return j;
}

#endif
