/* epk.h - streaming decoder of edgepack's .epk download package (format version 2).
 *
 * Portable C99, no heap: the caller gives the package (in RAM or memory-mapped flash), a work
 * buffer (static or allocated, epk_work_size() bytes) and takes the .tflite in chunks of any size,
 * e.g. to write it to a flash partition during an OTA update, or into a Java byte[] through JNI.
 * The SHA-256 of the restored model is checked after its last byte.
 *
 *     static uint8_t work[EPK_WORK_MAX];
 *     epk_decoder d; size_t need, n; int rc;
 *     if (epk_work_size(pkg, pkg_len, &need) != EPK_OK || need > sizeof work) fail();
 *     if (epk_open(&d, pkg, pkg_len, work, sizeof work) != EPK_OK) fail();
 *     while ((rc = epk_read(&d, chunk, sizeof chunk, &n)) == EPK_OK) flash_write(chunk, n);
 *     if (rc != EPK_DONE) fail();          // epk_error_string(rc) says why
 *
 * Limits (identical in edgepack/epk/limits.py and EpkDecoder.java): output <= 1 GiB and
 * <= 4096 x package size + 64 KiB; each stream bounded by the output length; LZMA lc+lp <= 4,
 * pb <= 4, dictionary 4 KiB..1 MiB; rANS tables checked against the frame's own size.
 */
#ifndef EPK_H
#define EPK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EPK_OK 0
#define EPK_DONE 1          /* every byte delivered and the SHA-256 matched */
#define EPK_E_FORMAT (-1)   /* not an .epk file */
#define EPK_E_VERSION (-2)  /* an .epk version this decoder does not read */
#define EPK_E_CORRUPT (-3)  /* truncated, corrupt or hostile */
#define EPK_E_LIMIT (-4)    /* a declared size beyond the format's limits (bomb) */
#define EPK_E_WORK (-5)     /* work buffer smaller than epk_work_size() */
#define EPK_E_SHA (-6)      /* decoded, but the SHA-256 differs */
#define EPK_E_ARG (-7)      /* NULL pointer or a call out of order */

#define EPK_STREAMS 5

typedef struct {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    uint32_t nbuf;
} epk_sha256;

typedef struct {
    uint8_t codec;
    uint32_t raw_len, produced;
    const uint8_t *p;
    uint32_t p_len, pos;
    /* rANS */
    uint16_t freq[256];
    uint16_t cum[257];
    uint32_t x;
    /* LZMA */
    uint16_t *probs;
    uint8_t *win;
    uint32_t win_size, win_pos, dict;
    uint32_t range, code, rep[4], match_rem;
    unsigned state, lc, lp, pb;
} epk_stream;

typedef struct {
    const uint8_t *in;
    size_t in_len;
    uint64_t out_len, produced, last;
    uint8_t digest[32];
    epk_sha256 sha;
    epk_stream s[EPK_STREAMS];
    const uint8_t *regs;
    uint32_t n_regs, reg_i;
    int phase;        /* 0 skeleton before region, 1 region body, 2 tail, 3 done */
    uint64_t skel_rem;
    uint32_t elem, count, rows, cols, row_len, itemsize;
    uint8_t transform, transposed, dtype;
    uint32_t lead;
    uint8_t *tbuf;
    uint8_t lut[256][4];
    uint8_t n_pos, n_neg;
    uint8_t pend[4], pend_n, pend_i;
    int err;
} epk_decoder;

/* Bytes of work memory the package needs (LZMA windows and probabilities, transposed codes). */
int epk_work_size(const uint8_t *in, size_t in_len, size_t *need);
/* Validate the header and every stream's limits; no output yet. */
int epk_open(epk_decoder *d, const uint8_t *in, size_t in_len, void *work, size_t work_len);
/* Write up to cap bytes to out (*written of them); EPK_OK more to come, EPK_DONE finished, < 0 error. */
int epk_read(epk_decoder *d, uint8_t *out, size_t cap, size_t *written);
uint64_t epk_output_length(const epk_decoder *d);
const char *epk_error_string(int rc);

#ifdef __cplusplus
}
#endif
#endif
