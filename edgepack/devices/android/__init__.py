"""Android devices over ADB: the device (adb.py), its two transports (adb_server.py through a running
adb server, adb_direct.py straight to adbd), the on-device work folder, ABI and benchmark-binary
choice, benchmark_model output parsing and energy from battery samples."""
