/*
 * http1_fuzz.c - libFuzzer target for the HTTP/1.1 head parser and the chunked decoder.
 *
 * The checks live in http1_invariants.h so that tests/unit/http/http1_regress_test.c applies
 * the same ones to the seed corpus and to every saved crasher on each unit run. Build and run:
 *
 *   make fuzz
 *   build/fuzz/http1_fuzz -dict=tests/fuzz/http1.dict tests/fuzz/corpus/http1
 *
 * A crasher goes to tests/fuzz/regressions/http1/ with the fix that makes it pass.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "http1_invariants.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *why = h1inv_all((const char *)data, size);
    if (why != NULL) {
        fprintf(stderr, "http1 invariant broken: %s\n", why);
        abort();
    }
    return 0;
}
