/* epk.c - streaming, heap-free decoder of edgepack's .epk format version 2 (see epk.h). */
#include "epk.h"

#include <string.h>

#define MAGIC0 'E'
#define MAGIC1 'P'
#define MAGIC2 'K'
#define VERSION 2
#define HEADER_SIZE (44 + EPK_STREAMS * 9)
#define REGION_SIZE 19
#define MAX_OUTPUT ((uint64_t)1 << 30)
#define MAX_RATIO 4096u
#define RATIO_SLACK ((uint64_t)1 << 16)
#define MIN_REGION 64u
#define MAX_RANK 127u
#define C_STORED 0
#define C_LZMA 3
#define C_RANS 4
#define RANS_BITS 14
#define RANS_SCALE (1u << RANS_BITS)
#define RANS_L (1u << 23)
#define RANS_X_MAX (1u << 31)
#define LZMA_MIN_DICT (1u << 12)
#define LZMA_MAX_DICT (1u << 20)
#define LZMA_BASE_PROBS 1846u

/* ---------------------------------------------------------------- little helpers */
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

/* ---------------------------------------------------------------- SHA-256 */
static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha_block(epk_sha256 *s, const uint8_t *p) {
    uint32_t w[64], a, b, c, d, e, f, g, h, t1, t2;
    int i;
    for (i = 0; i < 16; i++)
        w[i] = ((uint32_t)p[4 * i] << 24) | ((uint32_t)p[4 * i + 1] << 16) | ((uint32_t)p[4 * i + 2] << 8) | p[4 * i + 3];
    for (i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = s->h[0]; b = s->h[1]; c = s->h[2]; d = s->h[3]; e = s->h[4]; f = s->h[5]; g = s->h[6]; h = s->h[7];
    for (i = 0; i < 64; i++) {
        t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    s->h[0] += a; s->h[1] += b; s->h[2] += c; s->h[3] += d; s->h[4] += e; s->h[5] += f; s->h[6] += g; s->h[7] += h;
}

static void sha_init(epk_sha256 *s) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->len = 0;
    s->nbuf = 0;
}

static void sha_update(epk_sha256 *s, const uint8_t *p, size_t n) {
    s->len += n;
    while (n) {
        if (s->nbuf == 0 && n >= 64) {
            sha_block(s, p);
            p += 64;
            n -= 64;
            continue;
        }
        s->buf[s->nbuf++] = *p++;
        n--;
        if (s->nbuf == 64) {
            sha_block(s, s->buf);
            s->nbuf = 0;
        }
    }
}

static void sha_final(epk_sha256 *s, uint8_t out[32]) {
    uint64_t bits = s->len * 8;
    uint8_t pad = 0x80, zero = 0, lenb[8];
    int i;
    sha_update(s, &pad, 1);
    while (s->nbuf != 56) sha_update(s, &zero, 1);
    for (i = 0; i < 8; i++) lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha_update(s, lenb, 8);
    for (i = 0; i < 32; i++) out[i] = (uint8_t)(s->h[i / 4] >> (24 - 8 * (i % 4)));
}

/* ---------------------------------------------------------------- limits (as in limits.py) */
static uint64_t max_stream_length(int i, uint64_t out_len) {
    if (i == 0) return 4 + REGION_SIZE * (out_len / (MIN_REGION + 1));
    if (i == 2) return 3 * out_len;
    return out_len;
}

static uint32_t lzma_probs_count(unsigned lc, unsigned lp) { return LZMA_BASE_PROBS + (0x300u << (lc + lp)); }

static int lzma_params(const uint8_t *p, uint32_t n, unsigned *lc, unsigned *lp, unsigned *pb, uint32_t *dict) {
    unsigned props;
    if (n < 10) return EPK_E_CORRUPT;
    props = p[0];
    *lc = props % 9;
    *lp = props / 9 % 5;
    *pb = props / 45;
    *dict = rd32(p + 1);
    if (props >= 225 || *lc + *lp > 4 || *pb > 4) return EPK_E_CORRUPT;
    if (*dict < LZMA_MIN_DICT || *dict > LZMA_MAX_DICT) return EPK_E_CORRUPT;
    if (p[5] != 0) return EPK_E_CORRUPT;
    return EPK_OK;
}

static uint32_t lzma_window(uint32_t dict, uint32_t raw_len) {
    uint32_t w = dict < raw_len ? dict : raw_len;
    return w ? w : 1;
}

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

/* ---------------------------------------------------------------- rANS */
static int rans_open(epk_stream *s) {
    uint32_t n, k, i, sum = 0, fmax = 0, payload;
    int last = -1;
    const uint8_t *p = s->p;
    if (s->p_len < 6) return EPK_E_CORRUPT;
    n = rd32(p);
    k = rd16(p + 4);
    if (n != s->raw_len) return EPK_E_CORRUPT;
    if (k < 1 || k > 256 || s->p_len < 6 + 3 * k + 4) return EPK_E_CORRUPT;
    memset(s->freq, 0, sizeof s->freq);
    for (i = 0; i < k; i++) {
        unsigned sym = p[6 + 3 * i];
        uint32_t f = (uint32_t)rd16(p + 7 + 3 * i) + 1;
        if ((int)sym <= last) return EPK_E_CORRUPT;
        last = (int)sym;
        if (f > RANS_SCALE) return EPK_E_CORRUPT;
        s->freq[sym] = (uint16_t)f;
        sum += f;
        if (f > fmax) fmax = f;
    }
    if (sum != RANS_SCALE) return EPK_E_CORRUPT;
    payload = s->p_len - (6 + 3 * k);
    if (fmax < RANS_SCALE &&
        (uint64_t)n > ((uint64_t)8 * payload + 16) * RANS_SCALE / (RANS_SCALE - fmax)) return EPK_E_LIMIT;
    s->cum[0] = 0;
    for (i = 0; i < 256; i++) s->cum[i + 1] = (uint16_t)(s->cum[i] + s->freq[i]);
    s->pos = 6 + 3 * k;
    s->x = ((uint32_t)p[s->pos] << 24) | ((uint32_t)p[s->pos + 1] << 16) | ((uint32_t)p[s->pos + 2] << 8) | p[s->pos + 3];
    s->pos += 4;
    if (s->x < RANS_L || s->x >= RANS_X_MAX) return EPK_E_CORRUPT;
    /* one symbol (the state never moves) or nothing to decode: the frame must already be at its end */
    if ((fmax == RANS_SCALE || n == 0) && (s->pos != s->p_len || s->x != RANS_L)) return EPK_E_CORRUPT;
    return EPK_OK;
}

static int rans_get(epk_stream *s, uint8_t *b) {
    uint32_t slot, lo = 0, hi = 256;
    slot = s->x & (RANS_SCALE - 1);
    while (hi - lo > 1) {  /* largest sym with cum[sym] <= slot */
        uint32_t mid = (lo + hi) >> 1;
        if (s->cum[mid] <= slot) lo = mid; else hi = mid;
    }
    *b = (uint8_t)lo;
    s->x = s->freq[lo] * (s->x >> RANS_BITS) + slot - s->cum[lo];
    while (s->x < RANS_L) {
        if (s->pos >= s->p_len) return EPK_E_CORRUPT;
        s->x = (s->x << 8) | s->p[s->pos++];
    }
    return EPK_OK;
}

/* ---------------------------------------------------------------- LZMA (pull decoder, one byte a call) */
enum { P_ISMATCH = 0, P_ISREP = 192, P_ISREPG0 = 204, P_ISREPG1 = 216, P_ISREPG2 = 228, P_ISREP0LONG = 240,
       P_POSSLOT = 432, P_SPECPOS = 688, P_ALIGN = 802, P_LEN = 818, P_REPLEN = 1332, P_LITERAL = 1846 };
/* length coder layout inside P_LEN / P_REPLEN: choice 0, choice2 1, low 2 (16 x 8), mid 130 (16 x 8), high 258 (256) */

static int rc_norm(epk_stream *s) {
    if (s->range < (1u << 24)) {
        if (s->pos >= s->p_len) return EPK_E_CORRUPT;
        s->range <<= 8;
        s->code = (s->code << 8) | s->p[s->pos++];
    }
    return EPK_OK;
}

/* decodes one bit into *bit; returns an error code */
static int rc_bit(epk_stream *s, uint16_t *prob, unsigned *bit) {
    uint32_t bound = (s->range >> 11) * *prob;
    if (s->code < bound) {
        s->range = bound;
        *prob = (uint16_t)(*prob + ((2048 - *prob) >> 5));
        *bit = 0;
    } else {
        s->range -= bound;
        s->code -= bound;
        *prob = (uint16_t)(*prob - (*prob >> 5));
        *bit = 1;
    }
    return rc_norm(s);
}

#define BIT(probp, bitv) do { int rc_ = rc_bit(s, (probp), &(bitv)); if (rc_) return rc_; } while (0)

static int rc_tree(epk_stream *s, uint16_t *probs, unsigned nbits, uint32_t *out) {
    uint32_t m = 1;
    unsigned i, b = 0;
    for (i = 0; i < nbits; i++) {
        BIT(&probs[m], b);
        m = (m << 1) + b;
    }
    *out = m - (1u << nbits);
    return EPK_OK;
}

static int rc_rtree(epk_stream *s, uint16_t *probs, unsigned nbits, uint32_t *out) {
    uint32_t m = 1, sym = 0;
    unsigned i, b = 0;
    for (i = 0; i < nbits; i++) {
        BIT(&probs[m], b);
        m = (m << 1) + b;
        sym |= (uint32_t)b << i;
    }
    *out = sym;
    return EPK_OK;
}

static int rc_direct(epk_stream *s, unsigned nbits, uint32_t *out) {
    uint32_t res = 0;
    int rc;
    while (nbits--) {
        uint32_t t;
        s->range >>= 1;
        s->code -= s->range;
        t = 0u - (s->code >> 31);
        s->code += s->range & t;
        if (s->code == s->range) return EPK_E_CORRUPT;
        if ((rc = rc_norm(s)) != EPK_OK) return rc;
        res = (res << 1) + (t + 1);
    }
    *out = res;
    return EPK_OK;
}

static int lz_len(epk_stream *s, uint16_t *p, unsigned pos_state, uint32_t *len) {
    unsigned b;
    uint32_t v = 0;
    int rc;
    BIT(&p[0], b);
    if (!b) { rc = rc_tree(s, p + 2 + pos_state * 8, 3, &v); *len = v; return rc; }
    BIT(&p[1], b);
    if (!b) { rc = rc_tree(s, p + 130 + pos_state * 8, 3, &v); *len = 8 + v; return rc; }
    rc = rc_tree(s, p + 258, 8, &v);
    *len = 16 + v;
    return rc;
}

static int lzma_open(epk_stream *s, uint8_t **work) {
    uint32_t i, n;
    int rc = lzma_params(s->p, s->p_len, &s->lc, &s->lp, &s->pb, &s->dict);
    if (rc) return rc;
    n = lzma_probs_count(s->lc, s->lp);
    s->probs = (uint16_t *)(void *)*work;
    *work += align8((size_t)n * 2);
    for (i = 0; i < n; i++) s->probs[i] = 1024;
    s->win_size = lzma_window(s->dict, s->raw_len);
    s->win = *work;
    *work += align8(s->win_size);
    s->win_pos = 0;
    s->code = ((uint32_t)s->p[6] << 24) | ((uint32_t)s->p[7] << 16) | ((uint32_t)s->p[8] << 8) | s->p[9];
    s->range = 0xFFFFFFFFu;
    s->pos = 10;
    if (s->code == s->range) return EPK_E_CORRUPT;
    s->state = 0;
    s->rep[0] = s->rep[1] = s->rep[2] = s->rep[3] = 0;
    s->match_rem = 0;
    return EPK_OK;
}

static uint8_t win_back(const epk_stream *s, uint32_t dist) { /* byte dist+1 back */
    uint32_t i = s->win_pos >= dist + 1 ? s->win_pos - dist - 1 : s->win_pos + s->win_size - dist - 1;
    return s->win[i];
}

static void win_put(epk_stream *s, uint8_t b) {
    s->win[s->win_pos++] = b;
    if (s->win_pos == s->win_size) s->win_pos = 0;
}

static int lzma_get(epk_stream *s, uint8_t *out) {
    uint16_t *P = s->probs;
    unsigned b, pos_state;
    uint32_t len, total = s->produced;
    int rc;
    if (s->match_rem) {
        *out = win_back(s, s->rep[0]);
        win_put(s, *out);
        s->match_rem--;
        return EPK_OK;
    }
    pos_state = total & ((1u << s->pb) - 1);
    BIT(&P[P_ISMATCH + (s->state << 4) + pos_state], b);
    if (!b) { /* literal */
        unsigned prev = total ? win_back(s, 0) : 0;
        uint32_t lit_state = ((total & ((1u << s->lp) - 1)) << s->lc) + (prev >> (8 - s->lc));
        uint16_t *probs = P + P_LITERAL + 0x300u * lit_state;
        uint32_t sym = 1;
        if (s->state >= 7) {
            unsigned match = win_back(s, s->rep[0]);
            do {
                unsigned mbit = (match >> 7) & 1;
                match <<= 1;
                BIT(&probs[((1 + mbit) << 8) + sym], b);
                sym = (sym << 1) | b;
                if (mbit != b) break;
            } while (sym < 0x100);
        }
        while (sym < 0x100) {
            BIT(&probs[sym], b);
            sym = (sym << 1) | b;
        }
        *out = (uint8_t)(sym - 0x100);
        win_put(s, *out);
        s->state = s->state < 4 ? 0 : (s->state < 10 ? s->state - 3 : s->state - 6);
        return EPK_OK;
    }
    BIT(&P[P_ISREP + s->state], b);
    if (b) {
        if (total == 0) return EPK_E_CORRUPT;
        BIT(&P[P_ISREPG0 + s->state], b);
        if (!b) {
            BIT(&P[P_ISREP0LONG + (s->state << 4) + pos_state], b);
            if (!b) { /* short rep */
                s->state = s->state < 7 ? 9 : 11;
                *out = win_back(s, s->rep[0]);
                win_put(s, *out);
                return EPK_OK;
            }
        } else {
            uint32_t dist;
            BIT(&P[P_ISREPG1 + s->state], b);
            if (!b) {
                dist = s->rep[1];
            } else {
                BIT(&P[P_ISREPG2 + s->state], b);
                if (!b) {
                    dist = s->rep[2];
                } else {
                    dist = s->rep[3];
                    s->rep[3] = s->rep[2];
                }
                s->rep[2] = s->rep[1];
            }
            s->rep[1] = s->rep[0];
            s->rep[0] = dist;
        }
        if ((rc = lz_len(s, P + P_REPLEN, pos_state, &len)) != EPK_OK) return rc;
        s->state = s->state < 7 ? 8 : 11;
    } else {
        uint32_t slot, dist;
        s->rep[3] = s->rep[2];
        s->rep[2] = s->rep[1];
        s->rep[1] = s->rep[0];
        if ((rc = lz_len(s, P + P_LEN, pos_state, &len)) != EPK_OK) return rc;
        s->state = s->state < 7 ? 7 : 10;
        if ((rc = rc_tree(s, P + P_POSSLOT + (len < 3 ? len : 3) * 64, 6, &slot)) != EPK_OK) return rc;
        if (slot < 4) {
            dist = slot;
        } else {
            unsigned nd = (slot >> 1) - 1;
            uint32_t v;
            dist = (2 | (slot & 1)) << nd;
            if (slot < 14) {
                if ((rc = rc_rtree(s, P + P_SPECPOS + dist - slot, nd, &v)) != EPK_OK) return rc;
                dist += v;
            } else {
                if ((rc = rc_direct(s, nd - 4, &v)) != EPK_OK) return rc;
                dist += v << 4;
                if ((rc = rc_rtree(s, P + P_ALIGN, 4, &v)) != EPK_OK) return rc;
                dist += v;
            }
        }
        if (dist == 0xFFFFFFFFu) return EPK_E_CORRUPT; /* end marker before the declared length */
        s->rep[0] = dist;
    }
    if (s->rep[0] >= s->dict || s->rep[0] >= total) return EPK_E_CORRUPT;
    s->match_rem = len + 2 - 1;
    *out = win_back(s, s->rep[0]);
    win_put(s, *out);
    return EPK_OK;
}

/* ---------------------------------------------------------------- streams */
static int stream_get(epk_decoder *d, int i, uint8_t *b) {
    epk_stream *s = &d->s[i];
    int rc;
    if (s->produced >= s->raw_len) return EPK_E_CORRUPT;
    if (s->codec == C_STORED) {
        *b = s->p[s->produced];
        rc = EPK_OK;
    } else if (s->codec == C_RANS) {
        rc = rans_get(s, b);
    } else {
        rc = lzma_get(s, b);
    }
    if (rc) return rc;
    s->produced++;
    if (s->codec == C_RANS && s->produced == s->raw_len) {
        if (s->x != RANS_L || s->pos != s->p_len) return EPK_E_CORRUPT;
    }
    return EPK_OK;
}

/* ---------------------------------------------------------------- header and regions */
typedef struct {
    uint64_t offset;
    uint32_t size, lead;
    uint8_t dtype, transform, transposed;
} region;

static region get_region(const uint8_t *r) {
    region g;
    g.offset = rd64(r);
    g.size = rd32(r + 8);
    g.dtype = r[12];
    g.transform = r[13];
    g.transposed = r[14];
    g.lead = rd32(r + 15);
    return g;
}

static uint32_t itemsize(uint8_t dt) { return dt == 1 ? 1u : dt == 2 ? 4u : dt == 3 ? 2u : 0u; }

/* Validates everything that needs no decoding; computes the work memory. */
static int parse(const uint8_t *in, size_t n, epk_decoder *d, size_t *need) {
    uint64_t out_len, total = 0, last = 0, sum_sizes = 0, codes = 0, raws = 0;
    uint32_t i, nreg, tmax = 0;
    size_t pos = HEADER_SIZE;
    if (!in || !need) return EPK_E_ARG;
    if (n < 4 || in[0] != MAGIC0 || in[1] != MAGIC1 || in[2] != MAGIC2) return EPK_E_FORMAT;
    if (in[3] != VERSION) return EPK_E_VERSION;
    if (n < 44) return EPK_E_CORRUPT;
    out_len = rd64(in + 4);
    if (out_len > MAX_OUTPUT || out_len > (uint64_t)MAX_RATIO * n + RATIO_SLACK) return EPK_E_LIMIT;
    if (n < HEADER_SIZE) return EPK_E_CORRUPT;
    *need = 0;
    for (i = 0; i < EPK_STREAMS; i++) {
        const uint8_t *h = in + 44 + 9 * i;
        uint8_t c = h[0];
        uint32_t raw = rd32(h + 1), packed = rd32(h + 5);
        if (raw > max_stream_length((int)i, out_len)) return EPK_E_LIMIT;
        if ((c != C_STORED && c != C_LZMA && c != C_RANS) || (i == 0 && c != C_STORED)) return EPK_E_CORRUPT;
        total += packed;
        if (d) {
            memset(&d->s[i], 0, sizeof d->s[i]);
            d->s[i].codec = c;
            d->s[i].raw_len = raw;
            d->s[i].p_len = packed;
        }
    }
    if (total + HEADER_SIZE != n) return EPK_E_CORRUPT;
    for (i = 0; i < EPK_STREAMS; i++) {
        const uint8_t *h = in + 44 + 9 * i;
        uint32_t raw = rd32(h + 1), packed = rd32(h + 5);
        if (d) d->s[i].p = in + pos;
        if (h[0] == C_STORED && packed != raw) return EPK_E_CORRUPT;
        if (h[0] == C_LZMA) {
            unsigned lc, lp, pb;
            uint32_t dict;
            int rc = lzma_params(in + pos, packed, &lc, &lp, &pb, &dict);
            if (rc) return rc;
            *need += align8((size_t)lzma_probs_count(lc, lp) * 2) + align8(lzma_window(dict, raw));
        }
        pos += packed;
    }
    /* the region table, stored in place */
    {
        const uint8_t *rt = in + HEADER_SIZE;
        uint32_t rlen = rd32(in + 44 + 1);
        if (rlen < 4) return EPK_E_CORRUPT;
        nreg = rd32(rt);
        if ((uint64_t)rlen != 4 + (uint64_t)REGION_SIZE * nreg) return EPK_E_CORRUPT;
        for (i = 0; i < nreg; i++) {
            region g = get_region(rt + 4 + (size_t)REGION_SIZE * i);
            uint32_t isz = itemsize(g.dtype);
            if (g.offset < last || g.offset > out_len || g.size > out_len - g.offset || g.size <= MIN_REGION)
                return EPK_E_CORRUPT;
            if (g.transform > 2 || g.transposed > 1 || g.lead < 1 || ((g.transform == 0) != (g.dtype == 0)) ||
                (g.dtype && !isz)) return EPK_E_CORRUPT;
            if (g.transform && (g.size % isz || ((g.transform == 2 || g.transposed) && (g.size / isz) % g.lead)))
                return EPK_E_CORRUPT;
            if (g.transform) codes += g.size / isz; else raws += g.size;
            if (g.transform && g.transposed && g.size / isz > tmax) tmax = g.size / isz;
            sum_sizes += g.size;
            last = g.offset + g.size;
        }
        if (rd32(in + 44 + 9 + 1) != out_len - sum_sizes || rd32(in + 44 + 27 + 1) != codes ||
            rd32(in + 44 + 36 + 1) != raws) return EPK_E_CORRUPT;
        if (d) {
            d->regs = rt + 4;
            d->n_regs = nreg;
            d->out_len = out_len;
        }
    }
    *need += align8(tmax);
    return EPK_OK;
}

int epk_work_size(const uint8_t *in, size_t in_len, size_t *need) { return parse(in, in_len, NULL, need); }

int epk_open(epk_decoder *d, const uint8_t *in, size_t in_len, void *work, size_t work_len) {
    size_t need;
    uint8_t *w = (uint8_t *)work;
    int rc, i;
    if (!d) return EPK_E_ARG;
    memset(d, 0, sizeof *d);
    d->err = EPK_E_ARG;
    if ((rc = parse(in, in_len, d, &need)) != EPK_OK) return d->err = rc;
    if (need > work_len || (need && !work)) return d->err = EPK_E_WORK;
    d->in = in;
    d->in_len = in_len;
    memcpy(d->digest, in + 12, 32);
    sha_init(&d->sha);
    for (i = 0; i < EPK_STREAMS; i++) {
        epk_stream *s = &d->s[i];
        rc = EPK_OK;
        if (s->codec == C_RANS) rc = rans_open(s);
        else if (s->codec == C_LZMA) rc = lzma_open(s, &w);
        if (rc) return d->err = rc;
    }
    d->tbuf = w;
    d->s[0].produced = d->s[0].raw_len; /* read in place */
    d->phase = d->n_regs ? 0 : 2;
    d->reg_i = 0;
    d->last = 0;
    d->skel_rem = d->n_regs ? get_region(d->regs).offset : d->out_len;
    d->err = EPK_OK;
    return EPK_OK;
}

uint64_t epk_output_length(const epk_decoder *d) { return d ? d->out_len : 0; }

static int load_table(epk_decoder *d) {
    uint8_t np, nn;
    uint32_t k, j, isz = d->itemsize;
    int rc;
    if ((rc = stream_get(d, 2, &np)) || (rc = stream_get(d, 2, &nn))) return rc;
    if (np > MAX_RANK || nn > MAX_RANK) return EPK_E_CORRUPT;
    d->n_pos = np;
    d->n_neg = nn;
    memset(d->lut[0], 0, 4);
    for (k = 0; k < (uint32_t)np + nn; k++) {
        uint8_t *dst = d->lut[k < np ? 2 * k + 1 : 2 * (k - np) + 2];
        for (j = 0; j < isz; j++)
            if ((rc = stream_get(d, 2, &dst[j])) != EPK_OK) return rc;
    }
    return EPK_OK;
}

static int start_region(epk_decoder *d) {
    region g = get_region(d->regs + (size_t)REGION_SIZE * d->reg_i);
    uint32_t i;
    int rc;
    d->transform = g.transform;
    d->transposed = g.transposed;
    d->dtype = g.dtype;
    d->lead = g.lead;
    d->elem = 0;
    if (!g.transform) {
        d->count = g.size;
        d->itemsize = 1;
        return EPK_OK;
    }
    d->itemsize = itemsize(g.dtype);
    d->count = g.size / d->itemsize;
    d->rows = g.transform == 2 ? g.lead : 1;
    d->row_len = d->count / d->rows;
    d->cols = d->count / g.lead;
    if (g.transposed)
        for (i = 0; i < d->count; i++)
            if ((rc = stream_get(d, 3, &d->tbuf[i])) != EPK_OK) return rc;
    return EPK_OK;
}

/* the next element of the current region into d->pend */
static int next_elem(epk_decoder *d) {
    uint8_t code;
    int rc;
    if (!d->transform) {
        if ((rc = stream_get(d, 4, &d->pend[0])) != EPK_OK) return rc;
        d->pend_n = 1;
    } else {
        if (d->elem % d->row_len == 0 && (rc = load_table(d)) != EPK_OK) return rc;
        if (d->transposed) {
            code = d->tbuf[(d->elem % d->cols) * d->lead + d->elem / d->cols];
        } else if ((rc = stream_get(d, 3, &code)) != EPK_OK) {
            return rc;
        }
        if (code && ((code & 1) ? (uint32_t)(code + 1) / 2 > d->n_pos : (uint32_t)code / 2 > d->n_neg))
            return EPK_E_CORRUPT;
        memcpy(d->pend, d->lut[code], d->itemsize);
        d->pend_n = (uint8_t)d->itemsize;
    }
    d->pend_i = 0;
    d->elem++;
    return EPK_OK;
}

static int finish(epk_decoder *d) {
    uint8_t got[32];
    int i;
    for (i = 1; i < EPK_STREAMS; i++)
        if (d->s[i].produced != d->s[i].raw_len) return EPK_E_CORRUPT;
    sha_final(&d->sha, got);
    return memcmp(got, d->digest, 32) ? EPK_E_SHA : EPK_DONE;
}

int epk_read(epk_decoder *d, uint8_t *out, size_t cap, size_t *written) {
    size_t n = 0;
    int rc = EPK_OK;
    if (!d || !written || (!out && cap)) return EPK_E_ARG;
    *written = 0;
    if (d->err) return d->err;
    if (d->phase == 3) return EPK_DONE;
    while (n < cap && rc == EPK_OK) {
        if (d->pend_i < d->pend_n) {
            out[n++] = d->pend[d->pend_i++];
            continue;
        }
        if (d->phase == 0 || d->phase == 2) {
            if (d->skel_rem) {
                rc = stream_get(d, 1, &out[n]);
                if (rc == EPK_OK) { n++; d->skel_rem--; }
                continue;
            }
            if (d->phase == 2) { d->phase = 3; break; }
            rc = start_region(d);
            d->phase = 1;
            continue;
        }
        /* phase 1: region body */
        if (d->elem < d->count) { rc = next_elem(d); continue; }
        {
            region g = get_region(d->regs + (size_t)REGION_SIZE * d->reg_i);
            d->last = g.offset + g.size;
            d->reg_i++;
            if (d->reg_i < d->n_regs) {
                d->skel_rem = get_region(d->regs + (size_t)REGION_SIZE * d->reg_i).offset - d->last;
                d->phase = 0;
            } else {
                d->skel_rem = d->out_len - d->last;
                d->phase = 2;
            }
        }
    }
    sha_update(&d->sha, out, n);
    d->produced += n;
    *written = n;
    if (rc != EPK_OK) return d->err = rc;
    if (d->phase == 3) {
        rc = finish(d);
        if (rc != EPK_DONE) return d->err = rc;
        return n ? EPK_OK : EPK_DONE;
    }
    return EPK_OK;
}

const char *epk_error_string(int rc) {
    switch (rc) {
    case EPK_OK: return "ok";
    case EPK_DONE: return "done: the model is restored and its SHA-256 matches";
    case EPK_E_FORMAT: return "not an edgepack entropy package (no EPK header); give a .epk file";
    case EPK_E_VERSION: return "entropy package version not supported by this decoder (it reads version 2)";
    case EPK_E_CORRUPT: return "entropy package is corrupt or truncated; download it again";
    case EPK_E_LIMIT: return "entropy package declares sizes beyond the format's limits; download it again";
    case EPK_E_WORK: return "work buffer smaller than epk_work_size(); give a larger one";
    case EPK_E_SHA: return "entropy package does not restore the original model (SHA-256 mismatch); download it again";
    case EPK_E_ARG: return "invalid argument or call order";
    default: return "unknown error";
    }
}
