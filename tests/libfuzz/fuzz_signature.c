/*
 * fuzz_signature.c — libFuzzer target for em_compile's signature parser.
 *
 * Any bytes, as a NUL-terminated C string, go to fe_sig_parse. It must either
 * accept them (and then the canonical form it prints must parse back to the
 * same signature, and em_compile must build a closure of that type and free
 * it) or reject them with a message naming a column. Never a crash, never
 * undefined behaviour (built with ASan+UBSan), never a leak.
 *
 *   make FUZZ=1 libfuzz            # every target for FUZZ_SECONDS each
 *   build-fuzz/fuzz-signature -max_total_time=60 tests/libfuzz/corpus/signature
 */
#include "frontend.h"

#include <stdlib.h>
#include <string.h>

static em_tensor *dummy(em_tensor *x) { return x; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char *text = malloc(n + 1);
    if (!text) return 0;
    memcpy(text, data, n);
    text[n] = '\0';
    fe_sig sig, again;
    if (fe_sig_parse(text, &sig) == 0) {
        char canon[1024];
        fe_sig_format(&sig, canon, sizeof canon);
        if (fe_sig_parse(canon, &again) != 0 || memcmp(&sig, &again, sizeof sig) != 0) abort();
        void *fn = em_compile((void *)dummy, text, NULL);
        if (!fn) abort(); /* a signature the parser accepts must compile */
        em_compiled_free(fn);
    } else if (!strstr(em_last_error(), "column") && !strstr(em_last_error(), "signature")) {
        abort(); /* a rejection must say where */
    }
    em_clear_error();
    free(text);
    return 0;
}
