/* Board support for the edgepack profiling harness: five functions per board.
 *
 * Shipped: board_mps2.c (QEMU mps2-an386, CMSDK UART0 + SysTick) and
 * board_arduino.cpp (Arduino Serial + DWT/micros). For another board implement
 * these over its HAL (UART at 115200 8N1, a free-running cycle counter).
 */
#ifndef EDGEPACK_BOARD_H_
#define EDGEPACK_BOARD_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Clocks, UART (115200 8N1) and the cycle counter. */
void board_init(void);
/* Send one byte (blocking). */
void board_putc(char c);
/* Receive one byte (blocking). */
int board_getc(void);
/* A free-running 32-bit counter of core clock cycles (DWT->CYCCNT where present,
 * else SysTick-derived); differences are taken modulo 2^32. */
uint32_t board_cycles(void);
/* The frequency board_cycles() counts at, in Hz. */
uint32_t board_clock_hz(void);

#ifdef __cplusplus
}
#endif

#endif /* EDGEPACK_BOARD_H_ */
