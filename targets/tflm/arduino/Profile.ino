// edgepack profiling harness for Arduino: open the serial port at 115200 and
// let `edgepack profile --device serial:PORT` drive it (protocol in the README).
#include <TensorFlowLite.h>

#include "board.h"
#include "ep_harness.h"

void setup() { board_init(); }

void loop() { ep_harness_session(); }
