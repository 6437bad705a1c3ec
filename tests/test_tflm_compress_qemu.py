"""The TFLM-compressed firmware runs on the emulated Cortex-M4 (QEMU mps2-an386) and gives the
output CRC of the plain firmware (needs EDGEPACK_TFLM_ROOT, arm-none-eabi-gcc and qemu; slow)."""

from __future__ import annotations

import os
import shutil

import pytest

from edgepack.devices.base import open_device
from edgepack.devices.result import Settings
from test_tflm_compress import package_clustered

TFLM_ROOT = os.environ.get("EDGEPACK_TFLM_ROOT")
needs_tree = pytest.mark.skipif(
    not (TFLM_ROOT and shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
    reason="set EDGEPACK_TFLM_ROOT to a TFLM tree and install gcc-arm-none-eabi, libnewlib-arm-none-eabi, "
           "libstdc++-arm-none-eabi-newlib and qemu-system-arm")


@pytest.mark.slow
@needs_tree
def test_compressed_firmware_runs_in_qemu_with_the_plain_output_crc(tmp_path):
    from compress_helpers import cnn

    model = cnn(epochs=2)
    reports, results = {}, {}
    for enc in ("lut", "off"):
        reports[enc] = package_clustered(tmp_path / enc, model, enc)
        # one invoke; the harness checks its output CRC against the host TFLM's (a mismatch raises)
        with open_device("qemu:mps2-an386", tflm_root=TFLM_ROOT) as dev:
            results[enc] = dev.profile(tmp_path / enc, Settings(runs=1, warmup=0))
    auto, off = results["lut"], results["off"]
    assert reports["lut"]["firmware"]["compression"]["decode_op"]
    assert auto.output_checksum == off.output_checksum
    assert auto.output_checksum == reports["off"]["firmware"]["harness"]["expected_crc32"]
    # decoding costs instructions on the device: measured, not assumed
    assert auto.latency.instructions > off.latency.instructions
    assert (tmp_path / "lut/model.tflite").stat().st_size < (tmp_path / "off/model.tflite").stat().st_size
