"""Make a .tflite smaller without touching its math: short tensor names, no signature
defs, no conversion metadata.

The converter names a fused tensor after every op it absorbed
("model/dense/MatMul;model/dense/Relu;model/dense/BiasAdd"); the first part is
kept. Signature defs and the CONVERSION_METADATA entry are dropped: TFLite-Micro
reads neither, and the LiteRT Interpreter API (``run``) does not need them (the
signature-runner API does). The repacked flatbuffer aligns weight buffers to 4
bytes, not the converter's 16 (MLPerf Tiny's own ResNet-8 is packed that way).
Outputs are unchanged (tested bit for bit in LiteRT and TFLM).

Example::

    small = compact(model_bytes)
"""

from __future__ import annotations

KEEP_METADATA = {b"min_runtime_version"}


def compact(data: bytes) -> bytes:
    """Return the same model with short tensor names and without optional metadata."""
    from ..keras_compat import tf

    tf()
    from tensorflow.lite.tools import flatbuffer_utils as fu

    model = fu.convert_bytearray_to_object(bytearray(data))
    for sub in model.subgraphs:
        for t in sub.tensors:
            if t.name:
                t.name = t.name.split(b";")[0]
    model.signatureDefs = None
    model.metadata = [m for m in (model.metadata or []) if m.name in KEEP_METADATA] or None
    return bytes(fu.convert_object_to_bytearray(model))
