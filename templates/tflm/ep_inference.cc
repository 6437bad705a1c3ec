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

#if defined(EP_INPUT0_CTYPE) && defined(EP_OUTPUT0_CTYPE) && \
    (EP_INPUT0_QUANTIZED || EP_INPUT0_TFLITE_TYPE == 1) && (EP_OUTPUT0_QUANTIZED || EP_OUTPUT0_TFLITE_TYPE == 1)
#define EP_INFERENCE_SUPPORTED 1
#else
#define EP_INFERENCE_SUPPORTED 0
#endif

namespace {
alignas(16) uint8_t g_inference_arena[EP_ARENA_SIZE];
}  // namespace

extern "C" ep_inference_result ep_run_inference(const float* input, uint32_t count) {
  ep_inference_result result = {EP_INFER_OK, -1, 0.0f};
#if EP_INFERENCE_SUPPORTED
  if (input == NULL || count != EP_INPUT0_ELEMENTS) {
    result.status = EP_INFER_BAD_INPUT;
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
  TfLiteTensor* in = interpreter.input(0);
  if (in->bytes != EP_INPUT0_BYTES) {
    result.status = EP_INFER_BAD_INPUT;
    return result;
  }
  EP_INPUT0_CTYPE* x = reinterpret_cast<EP_INPUT0_CTYPE*>(in->data.data);
  for (uint32_t i = 0; i < count; ++i) {
    x[i] = ep_input0_quantize(input[i]);
  }
  if (interpreter.Invoke() != kTfLiteOk) {
    result.status = EP_INFER_INVOKE;
    return result;
  }
  const TfLiteTensor* out = interpreter.output(0);
  const EP_OUTPUT0_CTYPE* y = reinterpret_cast<const EP_OUTPUT0_CTYPE*>(out->data.data);
  for (uint32_t i = 0; i < EP_OUTPUT0_ELEMENTS; ++i) {
    const float v = ep_output0_dequantize(y[i]);
    if (result.top_class < 0 || v > result.top_score) {
      result.top_class = (int32_t)i;
      result.top_score = v;
    }
  }
#else
  (void)input;
  (void)count;
  result.status = EP_INFER_UNSUPPORTED;
#endif
  return result;
}
