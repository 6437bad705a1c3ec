/* Bare-metal entry point of the edgepack profiling harness (QEMU mps2-an386,
 * or any board whose startup code calls main()). Arduino uses the example sketch. */
#include "board.h"
#include "ep_harness.h"

int main(void) {
  board_init();
  for (;;) {
    ep_harness_session();
  }
}
