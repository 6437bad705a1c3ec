/* edgepack inference helper over the standard TFLM API: GetModel, the generated op
 * resolver, MicroInterpreter, the model_config.h quantize/dequantize functions. */
#include "ep_inference.h"

#include <stddef.h>
#include <stdint.h>

#include "model_config.h"
#include "model_data.h"
#include "model_ops.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

/* The classification output (its top class is the result): output 0 unless model_config.h names another. */
#ifndef EP_CLASS_OUTPUT
#define EP_CLASS_OUTPUT 0u
#ifdef EP_OUTPUT0_CTYPE
#define EP_CLASS_CTYPE EP_OUTPUT0_CTYPE
#endif
#define EP_CLASS_ELEMENTS EP_OUTPUT0_ELEMENTS
#define EP_CLASS_QUANTIZED EP_OUTPUT0_QUANTIZED
#define EP_CLASS_TFLITE_TYPE EP_OUTPUT0_TFLITE_TYPE
#define ep_class_dequantize ep_output0_dequantize
#endif

#if defined(EP_INPUT0_CTYPE) && defined(EP_CLASS_CTYPE) && \
    (EP_INPUT0_QUANTIZED || EP_INPUT0_TFLITE_TYPE == 1) && (EP_CLASS_QUANTIZED || EP_CLASS_TFLITE_TYPE == 1)
#define EP_INFERENCE_SUPPORTED 1
#else
#define EP_INFERENCE_SUPPORTED 0
#endif

#ifndef EP_INPUTS_ELEMENTS
#define EP_INPUTS_ELEMENTS EP_INPUT0_ELEMENTS
#endif
#ifndef EP_OUTPUTS_ELEMENTS
#define EP_OUTPUTS_ELEMENTS EP_OUTPUT0_ELEMENTS
#endif

namespace {
alignas(16) uint8_t g_inference_arena[EP_ARENA_SIZE];

#if EP_INFERENCE_SUPPORTED
uint32_t ElementCount(const TfLiteTensor* t) {
  uint32_t n = 1;
  for (int d = 0; d < t->dims->size; ++d) n *= (uint32_t)t->dims->data[d];
  return n;
}

// One output's values as floats into `y` (dequantized with its tensor's own scale and zero point).
int32_t ReadOutput(const TfLiteTensor* t, float* y) {
  const uint32_t n = ElementCount(t);
  const float scale = t->params.scale;
  const int32_t zp = t->params.zero_point;
  switch (t->type) {
    case kTfLiteFloat32:
      for (uint32_t i = 0; i < n; ++i) y[i] = t->data.f[i];
      return EP_INFER_OK;
    case kTfLiteInt8:
      for (uint32_t i = 0; i < n; ++i) y[i] = ep_dequantize(t->data.int8[i], scale, zp);
      return scale > 0.0f ? EP_INFER_OK : EP_INFER_UNSUPPORTED;
    case kTfLiteUInt8:
      for (uint32_t i = 0; i < n; ++i) y[i] = ep_dequantize(t->data.uint8[i], scale, zp);
      return scale > 0.0f ? EP_INFER_OK : EP_INFER_UNSUPPORTED;
    case kTfLiteInt16:
      for (uint32_t i = 0; i < n; ++i) y[i] = ep_dequantize(t->data.i16[i], scale, zp);
      return scale > 0.0f ? EP_INFER_OK : EP_INFER_UNSUPPORTED;
    default:
      return EP_INFER_UNSUPPORTED;
  }
}

#endif

#if EP_INFERENCE_SUPPORTED && EP_INPUT_COUNT > 1
// One input of a several-input model from `x` (its preprocessed floats), quantized with TFLite's rule.
int32_t FillInput(TfLiteTensor* t, const float* x) {
  const uint32_t n = ElementCount(t);
  const float scale = t->params.scale;
  const int32_t zp = t->params.zero_point;
  switch (t->type) {
    case kTfLiteFloat32:
      for (uint32_t i = 0; i < n; ++i) t->data.f[i] = x[i];
      return EP_INFER_OK;
    case kTfLiteInt8:
      for (uint32_t i = 0; i < n; ++i) t->data.int8[i] = ep_quantize_int8(x[i], scale, zp);
      return scale > 0.0f ? EP_INFER_OK : EP_INFER_UNSUPPORTED;
    case kTfLiteUInt8:
      for (uint32_t i = 0; i < n; ++i) t->data.uint8[i] = ep_quantize_uint8(x[i], scale, zp);
      return scale > 0.0f ? EP_INFER_OK : EP_INFER_UNSUPPORTED;
    case kTfLiteInt16:
      for (uint32_t i = 0; i < n; ++i) t->data.i16[i] = ep_quantize_int16(x[i], scale, zp);
      return scale > 0.0f ? EP_INFER_OK : EP_INFER_UNSUPPORTED;
    default:
      return EP_INFER_UNSUPPORTED;
  }
}
#endif
}  // namespace

extern "C" ep_inference_result ep_run_inference(const float* input, uint32_t count) {
  return ep_run_inference_outputs(input, count, NULL, 0u);
}

extern "C" ep_inference_result ep_run_inference_outputs(const float* input, uint32_t count, float* outputs,
                                                        uint32_t outputs_count) {
  ep_inference_result result = {EP_INFER_OK, -1, 0.0f};
#if EP_INFERENCE_SUPPORTED
  if (input == NULL || count != EP_INPUTS_ELEMENTS) {
    result.status = EP_INFER_BAD_INPUT;
    return result;
  }
  if (outputs != NULL && outputs_count != EP_OUTPUTS_ELEMENTS) {
    result.status = EP_INFER_BAD_OUTPUT;
    return result;
  }
  const tflite::Model* model = tflite::GetModel(EP_MODEL_DATA);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    result.status = EP_INFER_SCHEMA;
    return result;
  }
  static EP_OPS_NAMESPACE::OpResolver resolver;
  static bool ops_registered = false;
  if (!ops_registered) {
    if (EP_OPS_NAMESPACE::RegisterOps(resolver) != kTfLiteOk) {
      result.status = EP_INFER_OPS;
      return result;
    }
    ops_registered = true;
  }
  // A fresh interpreter per call: AllocateTensors() ends with Reset(), which zeroes the
  // variable tensors (a fused LSTM's state), so no state leaks from the previous call.
  tflite::MicroInterpreter interpreter(model, resolver, g_inference_arena, EP_ARENA_SIZE);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    result.status = EP_INFER_ALLOCATE;
    return result;
  }
#if EP_INPUT_COUNT > 1
  // Several inputs: `input` holds each input's floats in turn, in the model's input tensor order;
  // each is quantized with its tensor's own scale and zero point.
  const float* next = input;
  for (size_t k = 0; k < interpreter.inputs_size(); ++k) {
    TfLiteTensor* in = interpreter.input(k);
    const int32_t status = FillInput(in, next);
    if (status != EP_INFER_OK) {
      result.status = status;
      return result;
    }
    next += ElementCount(in);
  }
#else
  TfLiteTensor* in = interpreter.input(0);
  if (in->bytes != EP_INPUT0_BYTES) {
    result.status = EP_INFER_BAD_INPUT;
    return result;
  }
  EP_INPUT0_CTYPE* x = reinterpret_cast<EP_INPUT0_CTYPE*>(in->data.data);
  for (uint32_t i = 0; i < count; ++i) {
    x[i] = ep_input0_quantize(input[i]);
  }
#endif
  if (interpreter.Invoke() != kTfLiteOk) {
    result.status = EP_INFER_INVOKE;
    return result;
  }
  if (outputs != NULL) {  // every output in turn, in output tensor order
    float* next_out = outputs;
    for (size_t k = 0; k < interpreter.outputs_size(); ++k) {
      const int32_t status = ReadOutput(interpreter.output(k), next_out);
      if (status != EP_INFER_OK) {
        result.status = status;
        return result;
      }
      next_out += ElementCount(interpreter.output(k));
    }
  }
  const TfLiteTensor* out = interpreter.output(EP_CLASS_OUTPUT);
  const EP_CLASS_CTYPE* y = reinterpret_cast<const EP_CLASS_CTYPE*>(out->data.data);
  for (uint32_t i = 0; i < EP_CLASS_ELEMENTS; ++i) {
    const float v = ep_class_dequantize(y[i]);
    if (result.top_class < 0 || v > result.top_score) {
      result.top_class = (int32_t)i;
      result.top_score = v;
    }
  }
#else
  (void)input;
  (void)count;
  (void)outputs;
  (void)outputs_count;
  result.status = EP_INFER_UNSUPPORTED;
#endif
  return result;
}
