"""Devices that run models and the one result schema they all return.

At the root: the registry of device kinds and SPEC strings (registry.py), the lifecycle every
device follows (lifecycle.py), the artifact to profile (artifact.py), the result schema
(result.py) and what reads or compares results (store.py, compare.py, discover.py). By transport:
host.py (LiteRT in a child process), android/ (ADB), mcu/ (serial, QEMU, flashed boards), and
estimate.py (a device profile without the device, from :mod:`edgepack.costmodel`).
"""
