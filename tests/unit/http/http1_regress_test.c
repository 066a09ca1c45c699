/*
 * http1_regress_test.c - replays the HTTP/1 fuzz seeds and every saved crasher.
 *
 * Each file in tests/fuzz/regressions/http1 (inputs that once broke the parser) and in
 * tests/fuzz/corpus/http1 (the seeds) goes through the same checks as the fuzz target
 * (tests/fuzz/http1_invariants.h): it must not crash and every invariant must hold. Run from
 * the repository root, as the other unit tests are. A fixed fuzz crasher is added here by
 * dropping its file into the regressions directory.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../fuzz/http1_invariants.h"

/* Reads a whole file into a buffer of exactly its size, so a sanitizer sees any overread. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    cr_assert_geq(n, 0);
    rewind(f);
    char *p = malloc(n > 0 ? (size_t)n : 1);
    cr_assert_not_null(p);
    cr_assert_eq(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static size_t replay_dir(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s is missing (run from the repository root)", dir);
    size_t count = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char path[1024];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (de->d_name[0] == '.' || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        size_t len;
        char *data = slurp(path, &len);
        const char *why = h1inv_all(data, len);
        cr_expect_null(why, "%s: %s", path, why);
        free(data);
        count++;
    }
    closedir(d);
    return count;
}

Test(http1_regress, crashers)
{
    cr_assert_gt(replay_dir("tests/fuzz/regressions/http1"), 0);
}

Test(http1_regress, seed_corpus)
{
    cr_assert_geq(replay_dir("tests/fuzz/corpus/http1"), 20);
}
