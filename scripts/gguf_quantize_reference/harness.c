// Quantizes float32 rows with ggml's own code, the way llama-quantize does
// when it has no importance matrix: ggml_quantize_chunk(type, ..., NULL).
// The bytes it writes are the reference FineTune's src/gguf/quantize.rs must
// reproduce exactly (tests/gguf_write.rs).
//
// Input (little-endian): "FTQI", u32 case count, then per case u32 row_len,
// u32 n_rows and row_len*n_rows float32 values.
// Output: OUT_DIR/<TYPE>.bin, the quantized bytes of every case, in order.
#include "ggml.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const enum ggml_type TYPES[] = {
    GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1,
    GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K,
    GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K,
};
#define N_TYPES (sizeof(TYPES) / sizeof(TYPES[0]))

static uint32_t read_u32(FILE * f) {
    uint32_t v;
    if (fread(&v, 4, 1, f) != 1) {
        fprintf(stderr, "harness: truncated input\n");
        exit(1);
    }
    return v;
}

int main(int argc, char ** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s INPUT.bin OUT_DIR\n", argv[0]);
        return 2;
    }
    FILE * in = fopen(argv[1], "rb");
    if (!in) { perror(argv[1]); return 1; }
    char magic[4];
    if (fread(magic, 1, 4, in) != 4 || memcmp(magic, "FTQI", 4) != 0) {
        fprintf(stderr, "harness: %s is not an FTQI file\n", argv[1]);
        return 1;
    }
    const uint32_t n_cases = read_u32(in);

    FILE * outs[N_TYPES];
    for (size_t t = 0; t < N_TYPES; t++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s.bin", argv[2], ggml_type_name(TYPES[t]));
        outs[t] = fopen(path, "wb");
        if (!outs[t]) { perror(path); return 1; }
    }

    size_t total_values = 0;
    for (uint32_t c = 0; c < n_cases; c++) {
        const int64_t row_len = read_u32(in);
        const int64_t n_rows  = read_u32(in);
        const size_t n = (size_t) (row_len * n_rows);
        float * x = malloc(n * sizeof(float));
        if (fread(x, sizeof(float), n, in) != n) {
            fprintf(stderr, "harness: case %u truncated\n", c);
            return 1;
        }
        for (size_t t = 0; t < N_TYPES; t++) {
            if (row_len % ggml_blck_size(TYPES[t]) != 0) {
                fprintf(stderr, "harness: case %u: row length %lld is not a multiple of %s's block\n",
                        c, (long long) row_len, ggml_type_name(TYPES[t]));
                return 1;
            }
            const size_t size = ggml_row_size(TYPES[t], row_len) * (size_t) n_rows;
            void * y = calloc(1, size);
            // No importance matrix, as llama-quantize without --imatrix.
            const size_t written = ggml_quantize_chunk(TYPES[t], x, y, 0, n_rows, row_len, NULL);
            if (written != size || fwrite(y, 1, size, outs[t]) != size) {
                fprintf(stderr, "harness: case %u, %s: wrote %zu of %zu bytes\n",
                        c, ggml_type_name(TYPES[t]), written, size);
                return 1;
            }
            free(y);
        }
        total_values += n;
        free(x);
    }
    for (size_t t = 0; t < N_TYPES; t++) {
        fclose(outs[t]);
    }
    fprintf(stderr, "harness: %u cases, %zu values, %zu types\n", n_cases, total_values, N_TYPES);
    return 0;
}
