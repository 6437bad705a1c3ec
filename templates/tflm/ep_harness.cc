/* edgepack profiling harness over the standard TFLM API (MicroInterpreter,
 * MicroMutableOpResolver, arena_used_bytes()). Board I/O lives in board.h. */
#include "ep_harness.h"

#include <stddef.h>
#include <stdint.h>

#include "board.h"
#include "ep_protocol.h"
#include "model_config.h"
#include "model_data.h"
#include "model_ops.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

enum ErrorCode : int32_t {
  kErrSchema = 1,
  kErrOps = 2,
  kErrAllocate = 3,
  kErrRequest = 4,
  kErrInvoke = 5,
};

alignas(16) uint8_t g_tensor_arena[EP_ARENA_SIZE];

// Whether the model keeps state between invocations in variable tensors (a fused LSTM's
// output and cell state): such a model must be reset before every independent inference.
bool HasVariableTensors(const tflite::Model* model) {
  const auto* subgraphs = model->subgraphs();
  if (subgraphs == nullptr) return false;
  for (const auto* subgraph : *subgraphs) {
    if (subgraph == nullptr || subgraph->tensors() == nullptr) continue;
    for (const auto* tensor : *subgraph->tensors()) {
      if (tensor != nullptr && tensor->is_variable()) return true;
    }
  }
  return false;
}

// Every run starts from the state a fresh interpreter has (variable tensors zeroed), so each
// output depends on its own input only and matches the host TFLM interpreter's expectation.
TfLiteStatus Prepare(tflite::MicroInterpreter& interpreter, bool stateful) {
  if (stateful && interpreter.Reset() != kTfLiteOk) return kTfLiteError;
  // TFLM's memory planner may reuse the input buffers for later tensors, so every
  // input is refilled before every invoke (outside the timed region), each with the
  // pattern from its own first byte.
  for (size_t k = 0; k < interpreter.inputs_size(); ++k) {
    TfLiteTensor* input = interpreter.input(k);
    ep_fill_pattern(input->data.uint8, input->bytes);
    if (input->type == kTfLiteInt32) {  // integer inputs are indices (token ids): zeros, valid for any table
      for (size_t i = 0; i < input->bytes; ++i) input->data.uint8[i] = 0;
    }
  }
  return kTfLiteOk;
}

// The bytes of all inputs together (HELLO's "in").
size_t InputBytes(tflite::MicroInterpreter& interpreter) {
  size_t bytes = 0;
  for (size_t k = 0; k < interpreter.inputs_size(); ++k) bytes += interpreter.input(k)->bytes;
  return bytes;
}

// The bytes of all outputs together (HELLO's "out", RESULT's "out_bytes").
size_t OutputBytes(tflite::MicroInterpreter& interpreter) {
  size_t bytes = 0;
  for (size_t k = 0; k < interpreter.outputs_size(); ++k) bytes += interpreter.output(k)->bytes;
  return bytes;
}

// The CRC-32 of every output's bytes in turn, in output tensor order (one output: its own CRC).
uint32_t OutputCrc(tflite::MicroInterpreter& interpreter) {
  uint32_t crc = 0;
  for (size_t k = 0; k < interpreter.outputs_size(); ++k) {
    crc = ep_crc32_update(crc, interpreter.output(k)->data.uint8, interpreter.output(k)->bytes);
  }
  return crc;
}

void SendHello(size_t input_bytes, size_t output_bytes) {
  ep_line line;
  ep_line_begin(&line, "HELLO");
  ep_line_u64(&line, "v", EP_PROTOCOL_VERSION);
  ep_line_str(&line, "model", EP_MODEL_NAME);
  ep_line_u64(&line, "bytes", EP_MODEL_DATA_LEN);
  ep_line_u64(&line, "arena", EP_ARENA_SIZE);
  ep_line_u64(&line, "clock_hz", board_clock_hz());
  ep_line_u64(&line, "in", input_bytes);
  ep_line_u64(&line, "out", output_bytes);
  ep_line_send(&line);
}

void SendRun(uint32_t i, uint32_t cycles) {
  ep_line line;
  ep_line_begin(&line, "RUN");
  ep_line_u64(&line, "i", i);
  ep_line_u64(&line, "cycles", cycles);
  ep_line_u64(&line, "us", (uint64_t)cycles * 1000000u / board_clock_hz());
  ep_line_send(&line);
}

void SendResult(size_t arena_used, tflite::MicroInterpreter& interpreter) {
  ep_line line;
  ep_line_begin(&line, "RESULT");
  ep_line_u64(&line, "arena_used", arena_used);
  ep_line_hex32(&line, "crc32", OutputCrc(interpreter));
  ep_line_u64(&line, "out_bytes", OutputBytes(interpreter));
  ep_line_send(&line);
  ep_line_begin(&line, "DONE");
  ep_line_i32(&line, "status", 0);
  ep_line_send(&line);
}

}  // namespace

extern "C" int ep_harness_session(void) {
  ep_wait_start();
  const tflite::Model* model = tflite::GetModel(EP_MODEL_DATA);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    ep_send_error(kErrSchema, "model schema version differs from TFLM's");
    return kErrSchema;
  }
  static EP_OPS_NAMESPACE::OpResolver resolver;
  static bool ops_registered = false;
  if (!ops_registered) {
    if (EP_OPS_NAMESPACE::RegisterOps(resolver) != kTfLiteOk) {
      ep_send_error(kErrOps, "op registration failed");
      return kErrOps;
    }
    ops_registered = true;
  }
  tflite::MicroInterpreter interpreter(model, resolver, g_tensor_arena, EP_ARENA_SIZE);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    ep_send_error(kErrAllocate, "AllocateTensors failed: arena too small or op unsupported");
    return kErrAllocate;
  }
  SendHello(InputBytes(interpreter), OutputBytes(interpreter));

  uint32_t runs = 0, warmup = 0;
  if (ep_read_run_request(&runs, &warmup) != 0) {
    ep_send_error(kErrRequest, "expected R runs warmup");
    return kErrRequest;
  }
  const bool stateful = HasVariableTensors(model);
  for (uint32_t i = 0; i < warmup; ++i) {
    if (Prepare(interpreter, stateful) != kTfLiteOk || interpreter.Invoke() != kTfLiteOk) {
      ep_send_error(kErrInvoke, "Invoke failed");
      return kErrInvoke;
    }
  }
  for (uint32_t i = 0; i < runs; ++i) {
    if (Prepare(interpreter, stateful) != kTfLiteOk) {
      ep_send_error(kErrInvoke, "Reset failed");
      return kErrInvoke;
    }
    uint32_t start = board_cycles();
    TfLiteStatus status = interpreter.Invoke();
    uint32_t cycles = board_cycles() - start;
    if (status != kTfLiteOk) {
      ep_send_error(kErrInvoke, "Invoke failed");
      return kErrInvoke;
    }
    SendRun(i, cycles);
  }
  SendResult(interpreter.arena_used_bytes(), interpreter);
  return 0;
}
