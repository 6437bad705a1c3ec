"""Buffers stored after the flatbuffer (the large-model layout ai-edge-quantizer writes for big models) are
moved inside it before any object-API rewrite, which would drop them (a MobileNetV3 `--quantize auto` bundle
once shipped a model.tflite LiteRT could not load: "Constant buffer 1 specified an out of range offset")."""

from __future__ import annotations

import numpy as np

from edgepack.convert.flatbuffer import inline_buffers, tflite_schema
from locations import GOLDEN


def _outside(data: bytes) -> bytes:
    """``data`` rewritten with its largest buffer's bytes after the flatbuffer, addressed by offset/size."""
    tflite_schema()  # TensorFlow imported the edgepack way (Keras 2 selected) before its tools
    from tensorflow.lite.tools import flatbuffer_utils as fu

    obj = fu.convert_bytearray_to_object(bytearray(data))
    k = max(range(len(obj.buffers)), key=lambda i: 0 if obj.buffers[i].data is None else len(obj.buffers[i].data))
    payload = bytes(np.asarray(obj.buffers[k].data, dtype=np.uint8))
    obj.buffers[k].data, obj.buffers[k].size = None, len(payload)
    obj.buffers[k].offset = 1 << 40  # a placeholder of the same width: the serialized length does not change
    head = len(fu.convert_object_to_bytearray(obj))
    start = (head + 15) // 16 * 16
    obj.buffers[k].offset = start
    body = bytes(fu.convert_object_to_bytearray(obj))
    assert len(body) == head
    return body + bytes(start - head) + payload


def test_buffers_after_the_flatbuffer_are_moved_in_and_the_model_computes_the_same(tiny):
    from edgepack.runtime import LiteRT

    outside = _outside(tiny)
    m = tflite_schema().Model.GetRootAs(outside, 0)
    assert any(m.Buffers(i).Offset() > 1 for i in range(m.BuffersLength()))
    inside = inline_buffers(outside)
    m = tflite_schema().Model.GetRootAs(inside, 0)
    assert not any(m.Buffers(i).Offset() > 1 for i in range(m.BuffersLength()))
    x = np.random.default_rng(0).random([2, *LiteRT(tiny).interp.get_input_details()[0]["shape"][1:]])
    assert np.array_equal(LiteRT(outside).predict(x.astype(np.float32)), LiteRT(inside).predict(x.astype(np.float32)))
    assert inline_buffers(tiny) is tiny  # nothing outside: the same bytes


def test_metadata_writing_keeps_buffers_stored_outside(tiny):
    from edgepack.runtime import LiteRT
    from edgepack.targets.metadata import ModelDoc, TensorDoc, embed

    outside = _outside(tiny)
    info = LiteRT(tiny).interp
    doc = ModelDoc(name="tiny", inputs=[TensorDoc(name="x")] * len(info.get_input_details()),
                   outputs=[TensorDoc(name="y")] * len(info.get_output_details()))
    x = np.random.default_rng(1).random([1, *info.get_input_details()[0]["shape"][1:]]).astype(np.float32)
    assert np.array_equal(LiteRT(embed(outside, doc)).predict(x), LiteRT(tiny).predict(x))
