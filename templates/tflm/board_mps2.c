/* Board support for QEMU mps2-an386 (Cortex-M4, 25 MHz): CMSDK UART0 at
 * 0x40004000, SysTick-derived cycle counter (QEMU has no DWT), startup code and
 * vector table. Link with mps2_an386.ld. Run:
 *   qemu-system-arm -M mps2-an386 -nographic -icount shift=0 -kernel harness.elf
 */
#include <stdint.h>

#include "board.h"

#define MPS2_SYSCLK_HZ 25000000u
#define UART0_BASE 0x40004000u
#define UART_DATA (*(volatile uint32_t*)(UART0_BASE + 0x00u))
#define UART_STATE (*(volatile uint32_t*)(UART0_BASE + 0x04u))
#define UART_CTRL (*(volatile uint32_t*)(UART0_BASE + 0x08u))
#define UART_BAUDDIV (*(volatile uint32_t*)(UART0_BASE + 0x10u))
#define UART_STATE_TX_FULL 0x1u
#define UART_STATE_RX_FULL 0x2u

#define SYST_CSR (*(volatile uint32_t*)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t*)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t*)0xE000E018u)
#define SCB_CPACR (*(volatile uint32_t*)0xE000ED88u)
#define SYSTICK_RELOAD 0x00FFFFFFu

static volatile uint32_t s_systick_wraps;

void board_init(void) {
  UART_BAUDDIV = MPS2_SYSCLK_HZ / 115200u;
  UART_CTRL = 0x3u; /* TX and RX enabled */
  SYST_RVR = SYSTICK_RELOAD;
  SYST_CVR = 0u;
  SYST_CSR = 0x7u; /* processor clock, interrupt on wrap, enabled */
}

void board_putc(char c) {
  while (UART_STATE & UART_STATE_TX_FULL) {
  }
  UART_DATA = (uint32_t)(uint8_t)c;
}

int board_getc(void) {
  while (!(UART_STATE & UART_STATE_RX_FULL)) {
  }
  return (int)(UART_DATA & 0xFFu);
}

uint32_t board_cycles(void) {
  uint32_t wraps, value;
  do {
    wraps = s_systick_wraps;
    value = SYST_CVR;
  } while (wraps != s_systick_wraps);
  return wraps * (SYSTICK_RELOAD + 1u) + (SYSTICK_RELOAD - value);
}

uint32_t board_clock_hz(void) { return MPS2_SYSCLK_HZ; }

/* ---- startup ---- */
/* C++ static objects register their destructors against this handle (no crtbegin.o here). */
void* __dso_handle = 0;

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern void (*__init_array_start[])(void);
extern void (*__init_array_end[])(void);
int main(void);

void SysTick_Handler(void) { s_systick_wraps = s_systick_wraps + 1u; }

void Default_Handler(void) {
  for (;;) {
  }
}

void Reset_Handler(void) {
  uint32_t* src = &_sidata;
  uint32_t* dst;
  void (**ctor)(void);
#if defined(__ARM_FP)
  SCB_CPACR |= (0xFu << 20); /* CP10/CP11 full access: the FPU */
  __asm volatile("dsb\n\tisb" ::: "memory");
#endif
  for (dst = &_sdata; dst < &_edata;) *dst++ = *src++;
  for (dst = &_sbss; dst < &_ebss;) *dst++ = 0u;
  for (ctor = __init_array_start; ctor < __init_array_end; ++ctor) (*ctor)();
  main();
  Default_Handler();
}

__attribute__((section(".isr_vector"), used)) void (*const g_vectors[16])(void) = {
    (void (*)(void))(&_estack), Reset_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, 0, 0, 0, 0,
    Default_Handler, Default_Handler, 0, Default_Handler, SysTick_Handler,
};
