/* Board support for Arduino cores: Serial at 115200, DWT cycle counter on
 * Cortex-M3/M4/M7 (ARMv7-M), CPU cycle counter on ESP32, micros() elsewhere. */
#include <Arduino.h>

#include "board.h"
#include "model_config.h"

#if defined(ARDUINO_ARCH_ESP32)
#include <esp_cpu.h>
#endif

#if defined(__ARM_ARCH_7M__) || defined(__ARM_ARCH_7EM__) || defined(__ARM_ARCH_8M_MAIN__) || \
    defined(__ARM_ARCH_8_1M_MAIN__)
#define EP_HAVE_DWT 1
#define EP_DEMCR (*(volatile uint32_t*)0xE000EDFCu)
#define EP_DWT_CTRL (*(volatile uint32_t*)0xE0001000u)
#define EP_DWT_CYCCNT (*(volatile uint32_t*)0xE0001004u)
#endif

extern "C" void board_init(void) {
  Serial.begin(115200);
  while (!Serial) {
  }
#if defined(EP_HAVE_DWT)
  EP_DEMCR |= (1u << 24); /* TRCENA */
  EP_DWT_CYCCNT = 0u;
  EP_DWT_CTRL |= 1u; /* CYCCNTENA */
#endif
}

extern "C" void board_putc(char c) { Serial.write((uint8_t)c); }

extern "C" int board_getc(void) {
  while (Serial.available() <= 0) {
  }
  return Serial.read();
}

extern "C" uint32_t board_clock_hz(void) {
#if defined(ARDUINO_ARCH_ESP32)
  return (uint32_t)getCpuFrequencyMhz() * 1000000u;
#elif defined(F_CPU)
  return (uint32_t)F_CPU;
#else
  return EP_CLOCK_HZ;
#endif
}

extern "C" uint32_t board_cycles(void) {
#if defined(EP_HAVE_DWT)
  return EP_DWT_CYCCNT;
#elif defined(ARDUINO_ARCH_ESP32)
  return (uint32_t)esp_cpu_get_cycle_count();
#else
  return (uint32_t)((uint64_t)micros() * (board_clock_hz() / 1000000u));
#endif
}
