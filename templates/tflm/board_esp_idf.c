/* Board support for ESP-IDF: the console UART through stdio and the CPU cycle counter.
 * Built by the ESP-IDF component (CMakeLists.txt); call ep_harness_session() from app_main. */
#include <stdio.h>

#include "board.h"
#include "esp_cpu.h"
#include "esp_rom_sys.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"

void board_init(void) { setvbuf(stdin, NULL, _IONBF, 0); }

void board_putc(char c) {
  putchar(c);
  if (c == '\n') {
    fflush(stdout);
  }
}

int board_getc(void) {
  int c;
  while ((c = getchar()) == EOF) {
    vTaskDelay(1);
  }
  return c;
}

uint32_t board_cycles(void) { return (uint32_t)esp_cpu_get_cycle_count(); }

uint32_t board_clock_hz(void) { return esp_rom_get_cpu_ticks_per_us() * 1000000u; }
