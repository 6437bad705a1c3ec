/* edgepack inference example: one inference on example_input.h's sample, then the top
 * class on stdout. Builds on the host (CMake target <ident>_inference_example) and on any
 * board whose C library routes printf to a UART. Exit status 0 when the top class is the
 * one the host TFLM gave at packaging time. */
#include <stdio.h>

#include "ep_inference.h"
#include "example_input.h"
#include "model_config.h"

int main(void) {
  const ep_inference_result r = ep_run_inference(ep_example_input, EP_EXAMPLE_INPUT_LEN);
  if (r.status != EP_INFER_OK) {
    printf("inference failed: status %d\n", (int)r.status);
    return 1;
  }
  printf("top class %d score %.6f", (int)r.top_class, (double)r.top_score);
#if EP_HAVE_LABELS
  if ((uint32_t)r.top_class < EP_LABEL_COUNT) {
    printf(" label %s", ep_labels[r.top_class]);
  }
#endif
  printf(" (packaging-time host TFLM: %d)\n", EP_EXAMPLE_EXPECTED_CLASS);
  return r.top_class == EP_EXAMPLE_EXPECTED_CLASS ? 0 : 2;
}
