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
  EP_INFER_UNSUPPORTED = 6, /* an input / output is neither float32 nor per-tensor quantized */
  EP_INFER_BAD_OUTPUT = 7   /* ep_run_inference_outputs: outputs_count differs from EP_OUTPUTS_ELEMENTS */
};

typedef struct {
  int32_t status;    /* EP_INFER_OK or an EP_INFER_* error */
  int32_t top_class; /* index of the classification output's largest value (output EP_CLASS_OUTPUT; output 0
                        for a one-output model), -1 on error */
  float top_score;   /* that value, dequantized */
} ep_inference_result;

/* Quantize `count` (= EP_INPUT0_ELEMENTS) preprocessed floats into input 0 with
 * ep_input0_quantize, invoke once, return output 0's top class. A model with several inputs
 * (EP_INPUT_COUNT > 1) takes every input's floats one after another, in the model's input
 * tensor order (EP_INPUT0_ELEMENTS, then EP_INPUT1_ELEMENTS, ...; count = EP_INPUTS_ELEMENTS). Every call starts from a
 * reset state (a model's variable tensors, e.g. LSTM state, zeroed): outputs depend on
 * this input only. Not reentrant: one static tensor arena of EP_ARENA_SIZE bytes. */
ep_inference_result ep_run_inference(const float* input, uint32_t count);

/* As ep_run_inference, and also every output's dequantized values in turn, in output tensor order, into
 * `outputs` (EP_OUTPUT0_ELEMENTS, then EP_OUTPUT1_ELEMENTS, ...; outputs_count = EP_OUTPUTS_ELEMENTS).
 * EP_OUTPUT<k>_MODEL_OUTPUT names each output of a several-output model. */
ep_inference_result ep_run_inference_outputs(const float* input, uint32_t count, float* outputs,
                                             uint32_t outputs_count);

#ifdef __cplusplus
}
#endif

#endif /* EDGEPACK_EP_INFERENCE_H_ */
