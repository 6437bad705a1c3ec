package dev.edgepack.epk;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;

/**
 * Streaming decoder of edgepack's .epk download package (format version 2), plain JDK 17 (Android:
 * API 26+), no dependencies. Read the restored .tflite as an InputStream, or all at once:
 *
 * <pre>
 *   byte[] tflite = EpkDecoder.decode(Files.readAllBytes(Path.of("model.tflite.epk")));
 *   try (InputStream in = new EpkDecoder(pkgBytes)) { in.transferTo(out); }   // SHA-256 checked at the end
 * </pre>
 *
 * Limits are those of edgepack/epk/limits.py and epk.c (they reject the same files): output at most
 * 1 GiB and 4096 x the package size + 64 KiB; every stream bounded by the output length; LZMA
 * lc+lp &lt;= 4, pb &lt;= 4, dictionary 4 KiB..1 MiB; rANS tables checked against the frame's own size.
 */
public final class EpkDecoder extends InputStream {
    /** A package that is not an .epk, of another version, corrupt, truncated or beyond the limits. */
    public static final class EpkException extends IOException {
        private static final long serialVersionUID = 2L;

        public EpkException(String message) { super(message); }
    }

    private static final int VERSION = 2, STREAMS = 5, HEADER = 44 + STREAMS * 9, REGION = 19;
    private static final long MAX_OUTPUT = 1L << 30, MAX_RATIO = 4096, RATIO_SLACK = 1L << 16;
    private static final int MIN_REGION = 64, MAX_RANK = 127;
    private static final int STORED = 0, LZMA = 3, RANS = 4;
    private static final int RANS_BITS = 14, RANS_SCALE = 1 << RANS_BITS;
    private static final long RANS_L = 1L << 23, RANS_X_MAX = 1L << 31;
    private static final int LZMA_MIN_DICT = 1 << 12, LZMA_MAX_DICT = 1 << 20;

    static EpkException corrupt(String what) {
        return new EpkException("entropy package is corrupt or truncated (" + what + "); download it again");
    }

    static long u32(byte[] b, int p) {
        return (b[p] & 0xFFL) | (b[p + 1] & 0xFFL) << 8 | (b[p + 2] & 0xFFL) << 16 | (b[p + 3] & 0xFFL) << 24;
    }

    static long u64(byte[] b, int p) { return u32(b, p) | u32(b, p + 4) << 32; }

    static long maxStreamLength(int i, long outLen) {
        if (i == 0) return 4 + REGION * (outLen / (MIN_REGION + 1));
        if (i == 2) return 3 * outLen;
        return outLen;
    }

    static int itemsize(int dt) { return dt == 1 ? 1 : dt == 2 ? 4 : dt == 3 ? 2 : 0; }

    /** One stream: stored, static order-0 rANS or raw LZMA1, decoded one byte at a time. */
    static final class Stream {
        final int codec;
        final long rawLen;
        final byte[] in;
        final int start, len;
        long produced;
        int pos;
        // rANS
        final int[] freq = new int[256], cum = new int[257];
        long x;
        // LZMA
        short[] probs;
        byte[] win;
        int winPos, lc, lp, pb, state, matchRem;
        long dict, range, code;
        final long[] rep = new long[4];

        Stream(int codec, long rawLen, byte[] in, int start, int len) {
            this.codec = codec; this.rawLen = rawLen; this.in = in; this.start = start; this.len = len;
        }

        void open() throws EpkException {
            if (codec == STORED) {
                if (len != rawLen) throw corrupt("stored stream length differs from its raw length");
            } else if (codec == RANS) {
                openRans();
            } else {
                openLzma();
            }
        }

        void openRans() throws EpkException {
            if (len < 6) throw corrupt("rANS frame shorter than its header");
            long n = u32(in, start);
            int k = (in[start + 4] & 0xFF) | (in[start + 5] & 0xFF) << 8;
            if (n != rawLen) throw corrupt("rANS frame holds " + n + " symbols, its stream declares " + rawLen);
            if (k < 1 || k > 256 || len < 6 + 3 * k + 4) throw corrupt("rANS table does not fit its frame");
            int last = -1, sum = 0, fmax = 0;
            for (int i = 0; i < k; i++) {
                int sym = in[start + 6 + 3 * i] & 0xFF;
                int f = ((in[start + 7 + 3 * i] & 0xFF) | (in[start + 8 + 3 * i] & 0xFF) << 8) + 1;
                if (sym <= last) throw corrupt("rANS symbols not in ascending order");
                if (f > RANS_SCALE) throw corrupt("rANS frequency above 2**14");
                last = sym;
                freq[sym] = f;
                sum += f;
                fmax = Math.max(fmax, f);
            }
            if (sum != RANS_SCALE) throw corrupt("rANS frequencies do not sum to 2**14");
            long payload = len - (6 + 3 * k);
            if (fmax < RANS_SCALE && n > (8 * payload + 16) * RANS_SCALE / (RANS_SCALE - fmax))
                throw new EpkException("entropy package declares sizes beyond the format's limits (rANS frame claims "
                        + n + " symbols from " + payload + " bytes); download it again");
            for (int i = 0; i < 256; i++) cum[i + 1] = cum[i] + freq[i];
            pos = 6 + 3 * k;
            x = (in[start + pos] & 0xFFL) << 24 | (in[start + pos + 1] & 0xFFL) << 16
                    | (in[start + pos + 2] & 0xFFL) << 8 | (in[start + pos + 3] & 0xFFL);
            pos += 4;
            if (x < RANS_L || x >= RANS_X_MAX) throw corrupt("rANS initial state out of range");
            if ((fmax == RANS_SCALE || n == 0) && (pos != len || x != RANS_L))
                throw corrupt("rANS single-symbol frame with trailing bytes");
        }

        static int[] lzmaParams(byte[] in, int start, int len) throws EpkException {
            if (len < 10) throw corrupt("LZMA stream shorter than its header");
            int props = in[start] & 0xFF;
            long d = u32(in, start + 1);
            int lc = props % 9, lp = props / 9 % 5, pb = props / 45;
            if (props >= 225 || lc + lp > 4 || pb > 4) throw corrupt("LZMA properties byte " + props);
            if (d < LZMA_MIN_DICT || d > LZMA_MAX_DICT) throw corrupt("LZMA dictionary of " + d + " bytes");
            if (in[start + 5] != 0) throw corrupt("LZMA stream does not start with a zero byte");
            return new int[] {lc, lp, pb, (int) d};
        }

        void openLzma() throws EpkException {
            int[] p = lzmaParams(in, start, len);
            lc = p[0]; lp = p[1]; pb = p[2]; dict = p[3];
            probs = new short[1846 + (0x300 << (lc + lp))];
            Arrays.fill(probs, (short) 1024);
            win = new byte[(int) Math.max(1, Math.min(dict, rawLen))];
            code = (in[start + 6] & 0xFFL) << 24 | (in[start + 7] & 0xFFL) << 16 | (in[start + 8] & 0xFFL) << 8
                    | (in[start + 9] & 0xFFL);
            range = 0xFFFFFFFFL;
            pos = 10;
            if (code == range) throw corrupt("LZMA range coder start");
        }

        int get() throws EpkException {
            if (produced >= rawLen) throw corrupt("a stream ends early");
            int b;
            if (codec == STORED) b = in[start + (int) produced] & 0xFF;
            else if (codec == RANS) b = getRans();
            else b = getLzma();
            produced++;
            if (codec == RANS && produced == rawLen && (x != RANS_L || pos != len))
                throw corrupt("rANS stream does not end in its initial state");
            return b;
        }

        int getRans() throws EpkException {
            int slot = (int) (x & (RANS_SCALE - 1)), lo = 0, hi = 256;
            while (hi - lo > 1) {
                int mid = (lo + hi) >>> 1;
                if (cum[mid] <= slot) lo = mid; else hi = mid;
            }
            x = freq[lo] * (x >>> RANS_BITS) + slot - cum[lo];
            while (x < RANS_L) {
                if (pos >= len) throw corrupt("rANS stream ends early");
                x = (x << 8) | (in[start + pos++] & 0xFF);
            }
            return lo;
        }

        // ---- LZMA: probability layout as in epk.c
        static final int ISMATCH = 0, ISREP = 192, ISREPG0 = 204, ISREPG1 = 216, ISREPG2 = 228, ISREP0LONG = 240,
                POSSLOT = 432, SPECPOS = 688, ALIGN = 802, LEN = 818, REPLEN = 1332, LITERAL = 1846;

        void norm() throws EpkException {
            if (range < (1L << 24)) {
                if (pos >= len) throw corrupt("LZMA stream ends early");
                range = (range << 8) & 0xFFFFFFFFL;
                code = ((code << 8) | (in[start + pos++] & 0xFF)) & 0xFFFFFFFFL;
            }
        }

        int bit(int i) throws EpkException {
            int p = probs[i];
            long bound = (range >>> 11) * p;
            int b;
            if (code < bound) {
                range = bound;
                probs[i] = (short) (p + ((2048 - p) >>> 5));
                b = 0;
            } else {
                range -= bound;
                code -= bound;
                probs[i] = (short) (p - (p >>> 5));
                b = 1;
            }
            norm();
            return b;
        }

        int tree(int base, int nbits) throws EpkException {
            int m = 1;
            for (int i = 0; i < nbits; i++) m = (m << 1) + bit(base + m);
            return m - (1 << nbits);
        }

        int rtree(int base, int nbits) throws EpkException {
            int m = 1, sym = 0;
            for (int i = 0; i < nbits; i++) {
                int b = bit(base + m);
                m = (m << 1) + b;
                sym |= b << i;
            }
            return sym;
        }

        long direct(int nbits) throws EpkException {
            long res = 0;
            while (nbits-- > 0) {
                range >>>= 1;
                long t;
                if (code >= range) { code -= range; t = 1; } else { t = 0; }
                if (code == range) throw corrupt("LZMA direct bits");
                norm();
                res = (res << 1) + t;
            }
            return res;
        }

        int lenDecode(int base, int posState) throws EpkException {
            if (bit(base) == 0) return tree(base + 2 + posState * 8, 3);
            if (bit(base + 1) == 0) return 8 + tree(base + 130 + posState * 8, 3);
            return 16 + tree(base + 258, 8);
        }

        int back(long dist) {
            long i = winPos - dist - 1;
            if (i < 0) i += win.length;
            return win[(int) i] & 0xFF;
        }

        int put(int b) {
            win[winPos++] = (byte) b;
            if (winPos == win.length) winPos = 0;
            return b;
        }

        int getLzma() throws EpkException {
            if (matchRem > 0) {
                matchRem--;
                return put(back(rep[0]));
            }
            long total = produced;
            int posState = (int) (total & ((1 << pb) - 1));
            if (bit(ISMATCH + (state << 4) + posState) == 0) {
                int prev = total > 0 ? back(0) : 0;
                int litState = (int) (((total & ((1 << lp) - 1)) << lc) + (prev >>> (8 - lc)));
                int base = LITERAL + 0x300 * litState, sym = 1;
                if (state >= 7) {
                    int match = back(rep[0]);
                    do {
                        int mbit = (match >>> 7) & 1;
                        match <<= 1;
                        int b = bit(base + ((1 + mbit) << 8) + sym);
                        sym = (sym << 1) | b;
                        if (mbit != b) break;
                    } while (sym < 0x100);
                }
                while (sym < 0x100) sym = (sym << 1) | bit(base + sym);
                state = state < 4 ? 0 : (state < 10 ? state - 3 : state - 6);
                return put(sym - 0x100);
            }
            int len;
            if (bit(ISREP + state) != 0) {
                if (total == 0) throw corrupt("LZMA repeat before any byte");
                if (bit(ISREPG0 + state) == 0) {
                    if (bit(ISREP0LONG + (state << 4) + posState) == 0) {
                        state = state < 7 ? 9 : 11;
                        return put(back(rep[0]));
                    }
                } else {
                    long dist;
                    if (bit(ISREPG1 + state) == 0) {
                        dist = rep[1];
                    } else {
                        if (bit(ISREPG2 + state) == 0) {
                            dist = rep[2];
                        } else {
                            dist = rep[3];
                            rep[3] = rep[2];
                        }
                        rep[2] = rep[1];
                    }
                    rep[1] = rep[0];
                    rep[0] = dist;
                }
                len = lenDecode(REPLEN, posState);
                state = state < 7 ? 8 : 11;
            } else {
                rep[3] = rep[2]; rep[2] = rep[1]; rep[1] = rep[0];
                len = lenDecode(LEN, posState);
                state = state < 7 ? 7 : 10;
                int slot = tree(POSSLOT + Math.min(len, 3) * 64, 6);
                long dist;
                if (slot < 4) {
                    dist = slot;
                } else {
                    int nd = (slot >>> 1) - 1;
                    dist = (long) (2 | (slot & 1)) << nd;
                    if (slot < 14) {
                        dist += rtree(SPECPOS + (int) dist - slot, nd);
                    } else {
                        dist += direct(nd - 4) << 4;
                        dist += rtree(ALIGN, 4);
                    }
                }
                if (dist == 0xFFFFFFFFL) throw corrupt("LZMA end marker before the declared length");
                rep[0] = dist;
            }
            if (rep[0] >= dict || rep[0] >= total) throw corrupt("LZMA distance beyond the window");
            matchRem = len + 1;
            return put(back(rep[0]));
        }
    }

    private final byte[] in;
    private final long outLen;
    private final byte[] digest;
    private final Stream[] s = new Stream[STREAMS];
    private final int nRegs;
    private final MessageDigest sha;
    private int regI, phase, elem, count, rows, rowLen, cols, item, lead, transform, nPos, nNeg;
    private boolean transposed;
    private long skelRem, produced;
    private byte[] tbuf;
    private final byte[][] lut = new byte[256][4];
    private final byte[] pend = new byte[4];
    private int pendN, pendI;
    private boolean done;

    /** Validates the header and every stream's limits (throws EpkException); no output yet. */
    public EpkDecoder(byte[] pkg) throws EpkException {
        in = pkg;
        int n = pkg.length;
        if (n < 4 || pkg[0] != 'E' || pkg[1] != 'P' || pkg[2] != 'K')
            throw new EpkException("not an edgepack entropy package (no EPK header); give a .epk file");
        if (pkg[3] != VERSION)
            throw new EpkException("entropy package version " + (pkg[3] & 0xFF) + " is not supported (this decoder reads 2)");
        if (n < 44) throw corrupt("header truncated");
        outLen = u64(pkg, 4);
        if (outLen < 0 || outLen > MAX_OUTPUT || outLen > MAX_RATIO * n + RATIO_SLACK)
            throw new EpkException("entropy package declares sizes beyond the format's limits (" + Long.toUnsignedString(outLen)
                    + " output bytes from " + n + "); download it again");
        if (n < HEADER) throw corrupt("stream headers truncated");
        digest = Arrays.copyOfRange(pkg, 12, 44);
        long total = 0;
        for (int i = 0; i < STREAMS; i++) {
            int c = pkg[44 + 9 * i] & 0xFF;
            long raw = u32(pkg, 45 + 9 * i), packed = u32(pkg, 49 + 9 * i);
            if (raw > maxStreamLength(i, outLen))
                throw new EpkException("entropy package declares sizes beyond the format's limits (stream " + i + " of "
                        + raw + " bytes); download it again");
            if ((c != STORED && c != LZMA && c != RANS) || (i == 0 && c != STORED))
                throw corrupt("stream " + i + " has codec " + c);
            total += packed;
        }
        if (total + HEADER != n) throw corrupt("stream lengths do not add up to the file size");
        int pos = HEADER;
        for (int i = 0; i < STREAMS; i++) {
            int c = pkg[44 + 9 * i] & 0xFF;
            long raw = u32(pkg, 45 + 9 * i);
            int packed = (int) u32(pkg, 49 + 9 * i);
            s[i] = new Stream(c, raw, pkg, pos, packed);
            if (c == LZMA) Stream.lzmaParams(pkg, pos, packed);
            if (c == STORED && packed != raw) throw corrupt("stored stream length differs from its raw length");
            pos += packed;
        }
        // the region table, stored in place
        long rlen = s[0].rawLen;
        if (rlen < 4) throw corrupt("region table truncated");
        long nr = u32(pkg, HEADER);
        if (rlen != 4 + REGION * nr) throw corrupt("region table does not hold its regions");
        nRegs = (int) nr;
        long last = 0, sizes = 0, codes = 0, raws = 0, tmax = 0;
        for (int i = 0; i < nRegs; i++) {
            int r = HEADER + 4 + REGION * i;
            long off = u64(pkg, r), size = u32(pkg, r + 8), ld = u32(pkg, r + 15);
            int dt = pkg[r + 12] & 0xFF, tr = pkg[r + 13] & 0xFF, tp = pkg[r + 14] & 0xFF, isz = itemsize(dt);
            if (off < 0 || off < last || off > outLen || size > outLen - off || size <= MIN_REGION)
                throw corrupt("region at " + off + " overlaps or leaves the model");
            if (tr > 2 || tp > 1 || ld < 1 || (tr == 0) != (dt == 0) || (dt != 0 && isz == 0))
                throw corrupt("region at " + off + " has an invalid transform/dtype");
            if (tr != 0 && (size % isz != 0 || ((tr == 2 || tp == 1) && (size / isz) % ld != 0)))
                throw corrupt("region at " + off + " does not divide into its rows");
            if (tr != 0) codes += size / isz; else raws += size;
            if (tr != 0 && tp == 1) tmax = Math.max(tmax, size / isz);
            sizes += size;
            last = off + size;
        }
        if (s[1].rawLen != outLen - sizes || s[3].rawLen != codes || s[4].rawLen != raws)
            throw corrupt("stream lengths differ from what the region table needs");
        for (int i = 1; i < STREAMS; i++) s[i].open();
        tbuf = new byte[(int) tmax];
        try {
            sha = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        phase = nRegs > 0 ? 0 : 2;
        skelRem = nRegs > 0 ? regionOffset(0) : outLen;
    }

    /** Length of the restored .tflite (from the header). */
    public long outputLength() { return outLen; }

    private int reg(int i) { return HEADER + 4 + REGION * i; }
    private long regionOffset(int i) { return u64(in, reg(i)); }

    private void loadTable() throws EpkException {
        nPos = s[2].get();
        nNeg = s[2].get();
        if (nPos > MAX_RANK || nNeg > MAX_RANK) throw corrupt("value table of " + nPos + "+" + nNeg + " entries");
        Arrays.fill(lut[0], (byte) 0);
        for (int k = 0; k < nPos + nNeg; k++) {
            byte[] dst = lut[k < nPos ? 2 * k + 1 : 2 * (k - nPos) + 2];
            for (int j = 0; j < item; j++) dst[j] = (byte) s[2].get();
        }
    }

    private void startRegion() throws EpkException {
        int r = reg(regI);
        long size = u32(in, r + 8);
        int dt = in[r + 12] & 0xFF;
        transform = in[r + 13] & 0xFF;
        transposed = in[r + 14] == 1;
        lead = (int) u32(in, r + 15);
        elem = 0;
        if (transform == 0) {
            count = (int) size;
            item = 1;
            return;
        }
        item = itemsize(dt);
        count = (int) (size / item);
        rows = transform == 2 ? lead : 1;
        rowLen = count / rows;
        cols = count / lead;
        if (transposed) for (int i = 0; i < count; i++) tbuf[i] = (byte) s[3].get();
    }

    private void nextElem() throws EpkException {
        if (transform == 0) {
            pend[0] = (byte) s[4].get();
            pendN = 1;
        } else {
            if (elem % rowLen == 0) loadTable();
            int code = transposed ? tbuf[(elem % cols) * lead + elem / cols] & 0xFF : s[3].get();
            if (code != 0 && ((code & 1) == 1 ? (code + 1) / 2 > nPos : code / 2 > nNeg))
                throw corrupt("a weight code points outside its value table");
            System.arraycopy(lut[code], 0, pend, 0, item);
            pendN = item;
        }
        pendI = 0;
        elem++;
    }

    @Override
    public int read() throws IOException {
        byte[] one = new byte[1];
        int n = read(one, 0, 1);
        return n < 0 ? -1 : one[0] & 0xFF;
    }

    @Override
    public int read(byte[] out, int off, int cap) throws IOException {
        if (done) return -1;
        int n = 0;
        while (n < cap) {
            if (pendI < pendN) {
                out[off + n++] = pend[pendI++];
                continue;
            }
            if (phase == 0 || phase == 2) {
                if (skelRem > 0) {
                    out[off + n++] = (byte) s[1].get();
                    skelRem--;
                    continue;
                }
                if (phase == 2) { phase = 3; break; }
                startRegion();
                phase = 1;
                continue;
            }
            if (phase == 3) break;
            if (elem < count) { nextElem(); continue; }
            int r = reg(regI);
            long last = u64(in, r) + u32(in, r + 8);
            regI++;
            if (regI < nRegs) { skelRem = regionOffset(regI) - last; phase = 0; }
            else { skelRem = outLen - last; phase = 2; }
        }
        sha.update(out, off, n);
        produced += n;
        if (phase == 3) {
            for (int i = 1; i < STREAMS; i++)
                if (s[i].produced != s[i].rawLen) throw corrupt("stream " + i + " has bytes left over");
            if (!MessageDigest.isEqual(sha.digest(), digest))
                throw new EpkException("entropy package does not restore the original model (SHA-256 mismatch); download it again");
            done = true;
            return n > 0 ? n : -1;
        }
        return n;
    }

    /** Decode a whole package; throws EpkException with one clear line on any bad input. */
    public static byte[] decode(byte[] pkg) throws EpkException {
        EpkDecoder d = new EpkDecoder(pkg);
        byte[] out = new byte[(int) d.outputLength()];
        int pos = 0;
        try {
            while (pos < out.length) {
                int n = d.read(out, pos, out.length - pos);
                if (n < 0) break;
                pos += n;
            }
            if (d.read(new byte[1], 0, 1) != -1) throw corrupt("output longer than declared");
        } catch (EpkException e) {
            throw e;
        } catch (IOException e) {
            throw new EpkException(e.getMessage());
        }
        return out;
    }

    /**
     * java dev.edgepack.epk.EpkDecoder PACKAGE.epk OUT.tflite [REPEAT]: decode (REPEAT times, timing it);
     * java dev.edgepack.epk.EpkDecoder --each IN1 OUT1 IN2 OUT2 ...: one line per pair, exit 1 if any failed.
     */
    public static void main(String[] args) throws IOException {
        boolean each = args.length > 0 && args[0].equals("--each");
        if (args.length < 2 || (each && args.length % 2 == 0)) {
            System.err.println("usage: EpkDecoder PACKAGE.epk OUT.tflite [REPEAT] | --each IN OUT [IN OUT ...]");
            System.exit(2);
        }
        int failed = 0;
        for (int p = each ? 1 : 0; p < args.length; p += 2) {
            int repeat = !each && args.length > 2 ? Integer.parseInt(args[2]) : 1;
            try {
                byte[] pkg = Files.readAllBytes(Paths.get(args[p]));
                byte[] out = null;
                long best = Long.MAX_VALUE;
                for (int i = 0; i < repeat; i++) {
                    long t = System.nanoTime();
                    out = decode(pkg);
                    best = Math.min(best, System.nanoTime() - t);
                }
                Path o = Paths.get(args[p + 1]);
                Files.write(o, out);
                System.out.println(o + ": " + out.length + " bytes, SHA-256 verified; decode_seconds=" + best / 1e9);
            } catch (IOException e) {
                System.err.println("error: " + args[p] + ": " + e.getMessage());
                failed++;
            }
            if (!each) break;
        }
        System.exit(failed > 0 ? 1 : 0);
    }
}
