"""The TFLM-compressed firmware runs on the emulated Cortex-M4 (QEMU mps2-an386) and gives the
output CRC of the plain firmware, for each encoding (needs EDGEPACK_TFLM_ROOT,
arm-none-eabi-gcc and qemu; slow)."""

from __future__ import annotations

import pytest

from edgepack.devices.registry import open_device
from edgepack.devices.result import Settings
from test_tflm_compress import package_clustered

from tflm_helpers import TFLM_ROOT, needs_tree


def _profile(folder):
    # one invoke; the harness checks its output CRC against the host TFLM's (a mismatch raises)
    with open_device("qemu:mps2-an386", tflm_root=TFLM_ROOT) as dev:
        return dev.profile(folder, Settings(runs=1, warmup=0))


@pytest.mark.slow
@needs_tree
@pytest.mark.parametrize("encoding,sparsity", [("lut", 0.0), ("huffman", 0.0), ("prune", 0.6)])
def test_compressed_firmware_runs_in_qemu_with_the_plain_output_crc(tmp_path, encoding, sparsity):
    from compress_helpers import cnn

    model = cnn(epochs=2)
    reports = {enc: package_clustered(tmp_path / enc, model, enc, sparsity) for enc in (encoding, "off")}
    comp = reports[encoding]["firmware"]["compression"]
    assert comp["decode_op"] and any(t["encoding"] == encoding for t in comp["tensors"])
    packed, off = _profile(tmp_path / encoding), _profile(tmp_path / "off")
    assert packed.output_checksum == off.output_checksum
    assert packed.output_checksum == reports["off"]["firmware"]["harness"]["expected_crc32"]
    # decoding costs instructions on the device: measured, not assumed
    assert packed.latency.instructions > off.latency.instructions
    assert (tmp_path / encoding / "model.tflite").stat().st_size < (tmp_path / "off/model.tflite").stat().st_size
