/* Board support for STM32F4-family parts over a USART (register level, no HAL), with a
 * SysTick-derived cycle counter, startup code and vector table. Link with the linker script
 * edgepack generates from the device profile (flash at 0x08000000, SRAM at 0x20000000).
 *
 * Defaults: USART1 (0x40011000), the core clock the part boots with unless EP_SYSCLK_HZ says
 * otherwise. Tested in QEMU netduinoplus2 (STM32F405); on a real board also enable the
 * USART's GPIO pins and clocks in board_init (RCC, GPIO alternate function) for its pinout.
 */
#include <stdint.h>

#include "board.h"

#ifndef EP_USART_BASE
#define EP_USART_BASE 0x40011000u /* USART1 */
#endif
#ifndef EP_SYSCLK_HZ
#define EP_SYSCLK_HZ 168000000u
#endif

#define USART_SR (*(volatile uint32_t*)(EP_USART_BASE + 0x00u))
#define USART_DR (*(volatile uint32_t*)(EP_USART_BASE + 0x04u))
#define USART_BRR (*(volatile uint32_t*)(EP_USART_BASE + 0x08u))
#define USART_CR1 (*(volatile uint32_t*)(EP_USART_BASE + 0x0Cu))
#define USART_SR_RXNE 0x20u
#define USART_SR_TXE 0x80u
#define USART_CR1_UE 0x2000u
#define USART_CR1_TE 0x8u
#define USART_CR1_RE 0x4u

#define SYST_CSR (*(volatile uint32_t*)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t*)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t*)0xE000E018u)
#define SCB_CPACR (*(volatile uint32_t*)0xE000ED88u)
#define SYSTICK_RELOAD 0x00FFFFFFu

static volatile uint32_t s_wraps;

void board_init(void) {
  USART_BRR = EP_SYSCLK_HZ / 115200u;
  USART_CR1 = USART_CR1_UE | USART_CR1_TE | USART_CR1_RE;
  SYST_RVR = SYSTICK_RELOAD;
  SYST_CVR = 0u;
  SYST_CSR = 0x7u;
}

void board_putc(char c) {
  while (!(USART_SR & USART_SR_TXE)) {
  }
  USART_DR = (uint32_t)(uint8_t)c;
}

int board_getc(void) {
  while (!(USART_SR & USART_SR_RXNE)) {
  }
  return (int)(USART_DR & 0xFFu);
}

uint32_t board_cycles(void) {
  uint32_t wraps, value;
  do {
    wraps = s_wraps;
    value = SYST_CVR;
  } while (wraps != s_wraps);
  return wraps * (SYSTICK_RELOAD + 1u) + (SYSTICK_RELOAD - value);
}

uint32_t board_clock_hz(void) { return EP_SYSCLK_HZ; }

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern void (*__init_array_start[])(void);
extern void (*__init_array_end[])(void);
int main(void);

void SysTick_Handler(void) { s_wraps = s_wraps + 1u; }

void Fault_Handler(void) {
  for (;;) {
  }
}

void Reset_Handler(void) {
  uint32_t *src = &_sidata, *dst = &_sdata;
#if defined(__ARM_FP)
  SCB_CPACR |= (0xFu << 20);
  __asm volatile("dsb\n\tisb" ::: "memory");
#endif
  while (dst < &_edata) *dst++ = *src++;
  for (dst = &_sbss; dst < &_ebss; ++dst) *dst = 0u;
  for (void (**f)(void) = __init_array_start; f < __init_array_end; ++f) (*f)();
  main();
  Fault_Handler();
}

__attribute__((section(".isr_vector"), used)) void (*const g_vectors[16])(void) = {
    (void (*)(void))(&_estack), Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
    Fault_Handler, 0, 0, 0, 0, Fault_Handler, Fault_Handler, 0, Fault_Handler, SysTick_Handler,
};
