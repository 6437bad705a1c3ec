"""Microcontrollers: a board running the profiling harness over serial (serial.py), the harness
built and flashed onto a board (board.py, flashing tools in flash/), and the harness on QEMU (qemu.py)."""
