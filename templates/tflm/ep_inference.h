/* edgepack inference helper: one inference on a preprocessed float input, top class out.
 * The example programs (examples/inference/main.cc, the Arduino Inference sketch) use it;
 * read ep_inference.cc to see the TFLM calls it makes. */
#ifndef EDGEPACK_EP_INFERENCE_H_
#define EDGEPACK_EP_INFERENCE_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
  EP_INFER_OK = 0,
  EP_INFER_SCHEMA = 1,      /* the model's schema version differs from TFLM's */
  EP_INFER_OPS = 2,         /* op registration failed */
  EP_INFER_ALLOCATE = 3,    /* AllocateTensors failed (arena too small?) */
  EP_INFER_BAD_INPUT = 4,   /* count differs from EP_INPUTS_ELEMENTS (EP_INPUT0_ELEMENTS for one input) */
  EP_INFER_INVOKE = 5,      /* Invoke failed */
  EP_INFER_UNSUPPORTED = 6  /* an input / output 0 is neither float32 nor per-tensor quantized */
};

typedef struct {
  int32_t status;    /* EP_INFER_OK or an EP_INFER_* error */
  int32_t top_class; /* index of output 0's largest value, -1 on error */
  float top_score;   /* that value, dequantized */
} ep_inference_result;

/* Quantize `count` (= EP_INPUT0_ELEMENTS) preprocessed floats into input 0 with
 * ep_input0_quantize, invoke once, return output 0's top class. A model with several inputs
 * (EP_INPUT_COUNT > 1) takes every input's floats one after another, in the model's input
 * tensor order (EP_INPUT0_ELEMENTS, then EP_INPUT1_ELEMENTS, ...; count = EP_INPUTS_ELEMENTS). Every call starts from a
 * reset state (a model's variable tensors, e.g. LSTM state, zeroed): outputs depend on
 * this input only. Not reentrant: one static tensor arena of EP_ARENA_SIZE bytes. */
ep_inference_result ep_run_inference(const float* input, uint32_t count);

#ifdef __cplusplus
}
#endif

#endif /* EDGEPACK_EP_INFERENCE_H_ */
