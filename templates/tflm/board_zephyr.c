/* Board support for Zephyr: the zephyr,console UART (polling) and the kernel's
 * hardware cycle counter. Built by the Zephyr module when CONFIG_..._HARNESS=y. */
#include <zephyr/device.h>
#include <zephyr/drivers/uart.h>
#include <zephyr/kernel.h>

#include "board.h"

static const struct device *const ep_uart = DEVICE_DT_GET(DT_CHOSEN(zephyr_console));

void board_init(void) {}

void board_putc(char c) { uart_poll_out(ep_uart, (unsigned char)c); }

int board_getc(void) {
  unsigned char c;
  while (uart_poll_in(ep_uart, &c) != 0) {
    k_yield();
  }
  return c;
}

/* k_cycle_get_32() counts at sys_clock_hw_cycles_per_sec(): the CPU clock on SysTick-driven
 * Cortex-M parts, a slower timer on others; board_clock_hz() reports that rate. */
uint32_t board_cycles(void) { return k_cycle_get_32(); }

uint32_t board_clock_hz(void) { return (uint32_t)sys_clock_hw_cycles_per_sec(); }
