/* edgepack: quantize / dequantize exactly as TFLite's and TFLite-Micro's QUANTIZE and
 * DEQUANTIZE kernels do. C99 and C++, header only, no libm.
 *
 *   q = clamp(round(x / scale) + zero_point, qmin, qmax)   halves round away from zero
 *   x = scale * (q - zero_point)
 *
 * model_config.h wraps these per tensor (ep_input0_quantize, ep_output0_dequantize, ...). */
#ifndef EDGEPACK_EP_QUANTIZE_H_
#define EDGEPACK_EP_QUANTIZE_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* round(x / scale) + zero_point saturated to [qmin, qmax]. The division is in float, as
 * TFLite's AffineQuantize does; rounding is TfLiteRound's (half away from zero). Values
 * beyond the range (and +-inf) saturate; NaN gives zero_point (clamped). */
static inline int32_t ep_quantize(float x, float scale, int32_t zero_point, int32_t qmin, int32_t qmax) {
  const float q = x / scale;
  const float lo = (float)(qmin - zero_point);
  const float hi = (float)(qmax - zero_point);
  int32_t r;
  if (q != q) {
    r = zero_point;
  } else if (q <= lo) {
    r = qmin;
  } else if (q >= hi) {
    r = qmax;
  } else {
    /* |q| < 2^17 here: the truncation is exact and so is q - t. */
    int32_t t = (int32_t)q;
    const float frac = q - (float)t;
    if (frac >= 0.5f) {
      t += 1;
    } else if (frac <= -0.5f) {
      t -= 1;
    }
    r = t + zero_point;
  }
  return r < qmin ? qmin : (r > qmax ? qmax : r);
}

static inline int8_t ep_quantize_int8(float x, float scale, int32_t zero_point) {
  return (int8_t)ep_quantize(x, scale, zero_point, -128, 127);
}

static inline uint8_t ep_quantize_uint8(float x, float scale, int32_t zero_point) {
  return (uint8_t)ep_quantize(x, scale, zero_point, 0, 255);
}

static inline int16_t ep_quantize_int16(float x, float scale, int32_t zero_point) {
  return (int16_t)ep_quantize(x, scale, zero_point, -32768, 32767);
}

/* scale * (q - zero_point). (q - zero_point) is exact in float for 8/16-bit q, so the one
 * float multiply gives the same value as TFLite's double product cast to float. */
static inline float ep_dequantize(int32_t q, float scale, int32_t zero_point) {
  return scale * (float)(q - zero_point);
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EDGEPACK_EP_QUANTIZE_H_ */
