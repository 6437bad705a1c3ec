/* epk_unpack - command-line .epk decoder built on epk.c (host tool; the library itself needs no heap).
 *
 *     cc -std=c99 -O2 -o epk_unpack epk_unpack.c epk.c && ./epk_unpack model.tflite.epk model.tflite
 *
 * A third argument REPEAT decodes the package that many times (to a scratch chunk) and prints the
 * fastest decode's CPU seconds as decode_seconds=...
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "epk.h"

int main(int argc, char **argv) {
    FILE *f, *o;
    long len;
    uint8_t *in, *work, chunk[4096];
    size_t need, n;
    epk_decoder d;
    int rc, r, repeat = argc > 3 ? atoi(argv[3]) : 0;
    double best = 1e30;
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s PACKAGE.epk OUT.tflite\n", argv[0]);
        return 2;
    }
    if (!(f = fopen(argv[1], "rb"))) { fprintf(stderr, "error: %s: cannot open\n", argv[1]); return 1; }
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    in = (uint8_t *)malloc(len > 0 ? (size_t)len : 1);
    if (!in || fread(in, 1, (size_t)len, f) != (size_t)len) { fprintf(stderr, "error: %s: cannot read\n", argv[1]); return 1; }
    fclose(f);
    if ((rc = epk_work_size(in, (size_t)len, &need)) != EPK_OK) {
        fprintf(stderr, "error: %s: %s\n", argv[1], epk_error_string(rc));
        return 1;
    }
    work = (uint8_t *)malloc(need ? need : 1);
    if (!work || (rc = epk_open(&d, in, (size_t)len, work, need)) != EPK_OK) {
        fprintf(stderr, "error: %s: %s\n", argv[1], epk_error_string(work ? rc : EPK_E_WORK));
        return 1;
    }
    for (r = 0; r < repeat; r++) {
        clock_t t0 = clock();
        epk_open(&d, in, (size_t)len, work, need);
        while ((rc = epk_read(&d, chunk, sizeof chunk, &n)) == EPK_OK) {}
        if ((double)(clock() - t0) / CLOCKS_PER_SEC < best) best = (double)(clock() - t0) / CLOCKS_PER_SEC;
    }
    if (repeat) printf("decode_seconds=%.6f\n", best);
    epk_open(&d, in, (size_t)len, work, need);
    if (!(o = fopen(argv[2], "wb"))) { fprintf(stderr, "error: %s: cannot write\n", argv[2]); return 1; }
    while ((rc = epk_read(&d, chunk, sizeof chunk, &n)) == EPK_OK) fwrite(chunk, 1, n, o);
    fwrite(chunk, 1, n, o);
    fclose(o);
    if (rc != EPK_DONE) {
        remove(argv[2]);
        fprintf(stderr, "error: %s: %s\n", argv[1], epk_error_string(rc));
        return 1;
    }
    printf("%s: %llu bytes, SHA-256 verified (work memory %lu bytes)\n", argv[2],
           (unsigned long long)epk_output_length(&d), (unsigned long)need);
    return 0;
}
