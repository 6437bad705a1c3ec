/* Test firmware for the harness protocol and the mps2 board shim (no TFLM):
 * speaks protocol v1 over the real UART shim, with a fixed byte transform
 * standing in for Invoke(). tests/tflm/test_arm_compile.py builds and runs it in QEMU. */
#include <stdint.h>

#include "board.h"
#include "ep_protocol.h"

#define IN_BYTES 100u
#define OUT_BYTES 37u

static uint8_t g_in[IN_BYTES];
static uint8_t g_out[OUT_BYTES];

static void transform(void) {
  uint32_t j;
  for (j = 0; j < OUT_BYTES; ++j) g_out[j] = (uint8_t)(g_in[(j * 7u) % IN_BYTES] ^ (uint8_t)j);
}

int main(void) {
  board_init();
  for (;;) {
    ep_line line;
    uint32_t runs = 0, warmup = 0, i;
    ep_wait_start();
    ep_line_begin(&line, "HELLO");
    ep_line_u64(&line, "v", EP_PROTOCOL_VERSION);
    ep_line_str(&line, "model", "selftest");
    ep_line_u64(&line, "bytes", 0);
    ep_line_u64(&line, "arena", 0);
    ep_line_u64(&line, "clock_hz", board_clock_hz());
    ep_line_u64(&line, "in", IN_BYTES);
    ep_line_u64(&line, "out", OUT_BYTES);
    ep_line_send(&line);
    if (ep_read_run_request(&runs, &warmup) != 0) {
      ep_send_error(4, "expected R runs warmup");
      continue;
    }
    ep_fill_pattern(g_in, IN_BYTES);
    for (i = 0; i < warmup; ++i) transform();
    for (i = 0; i < runs; ++i) {
      uint32_t start = board_cycles();
      transform();
      uint32_t cycles = board_cycles() - start;
      ep_line_begin(&line, "RUN");
      ep_line_u64(&line, "i", i);
      ep_line_u64(&line, "cycles", cycles);
      ep_line_u64(&line, "us", (uint64_t)cycles * 1000000u / board_clock_hz());
      ep_line_send(&line);
    }
    ep_line_begin(&line, "RESULT");
    ep_line_u64(&line, "arena_used", 0);
    ep_line_hex32(&line, "crc32", ep_crc32(g_out, OUT_BYTES));
    ep_line_u64(&line, "out_bytes", OUT_BYTES);
    ep_line_send(&line);
    ep_line_begin(&line, "DONE");
    ep_line_i32(&line, "status", 0);
    ep_line_send(&line);
  }
}
