"""TFLite Metadata: write it into a .tflite (and read it back), as the metadata spec defines it.

What a model with metadata is (read from the upstream populators, written here):

* a ``ModelMetadata`` flatbuffer (schema ``metadata_schema.fbs``, file identifier ``"M001"``) whose
  ``min_parser_version`` is the newest schema member it uses (:func:`min_parser_version`);
* stored as one more ``Buffer`` of the TFLite model, named by a ``Metadata`` entry ``"TFLITE_METADATA"``;
* associated files (labels ...) appended after the flatbuffer as a zip archive of *stored*
  (uncompressed) members whose offsets count from the start of the file: MediaPipe's extractor hands out
  views into the model buffer and rejects compressed members.

The schema classes are the flatc-generated module (:mod:`.metadata_schema_py_generated`); the TFLite
model is edited through TensorFlow's own object API (``flatbuffer_utils``). Output is deterministic:
zip members carry a fixed timestamp and mode.

Example::

    doc = ModelDoc(name="digits", description="...", version="1",
                   inputs=[TensorDoc("image", "28x28 digit", content="image", color_space="GRAYSCALE",
                                     image_size=(28, 28), mean=(0.0,), std=(255.0,))],
                   outputs=[TensorDoc("probability", "class scores", labels_file="labels.txt")],
                   files={"labels.txt": b"zero\\none\\n..."})
    annotated = embed(model_bytes, doc)
    read_metadata(annotated)["name"]        # "digits"
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import EdgepackError

METADATA_NAME = b"TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the zip epoch: same inputs, same bytes


class MetadataError(EdgepackError):
    """The metadata does not fit the model (tensor counts, file names)."""


@dataclass(frozen=True)
class TensorDoc:
    """What the metadata says about one input or output tensor.

    ``content``: "image" (``color_space`` RGB/GRAYSCALE, ``image_size`` (width, height)), "audio"
    (``sample_rate``, ``channels``) or "feature". ``mean``/``std``: NormalizationOptions
    (``(v - mean) / std`` per channel, one value = all channels). ``min``/``max``: Stats.
    ``labels_file``: an associated TENSOR_AXIS_LABELS file (one name per line, in axis order).
    """

    name: str
    description: str = ""
    content: str = "feature"
    color_space: Optional[str] = None
    image_size: Optional[tuple[int, int]] = None
    sample_rate: Optional[int] = None
    channels: Optional[int] = None
    mean: Optional[Sequence[float]] = None
    std: Optional[Sequence[float]] = None
    min: Optional[Sequence[float]] = None
    max: Optional[Sequence[float]] = None
    labels_file: Optional[str] = None
    labels_description: str = "Class names, one per line, in the order of this tensor's last axis."


@dataclass(frozen=True)
class ModelDoc:
    name: str
    description: str = ""
    version: Optional[str] = None
    author: Optional[str] = None
    license: Optional[str] = None
    inputs: Sequence[TensorDoc] = ()
    outputs: Sequence[TensorDoc] = ()
    files: dict[str, bytes] = field(default_factory=dict)  # associated files packed into the zip


def _schema():
    from . import metadata_schema_py_generated as fb

    return fb


def _content(fb, t: TensorDoc):
    c = fb.ContentT()
    if t.content == "image":
        props = fb.ImagePropertiesT()
        props.colorSpace = getattr(fb.ColorSpaceType, t.color_space or "UNKNOWN")
        if t.image_size is not None:
            props.defaultSize = fb.ImageSizeT()
            props.defaultSize.width, props.defaultSize.height = (int(v) for v in t.image_size)
        c.contentPropertiesType, c.contentProperties = fb.ContentProperties.ImageProperties, props
    elif t.content == "audio":
        props = fb.AudioPropertiesT()
        props.sampleRate, props.channels = int(t.sample_rate or 0), int(t.channels or 1)
        c.contentPropertiesType, c.contentProperties = fb.ContentProperties.AudioProperties, props
    elif t.content == "feature":
        c.contentPropertiesType, c.contentProperties = fb.ContentProperties.FeatureProperties, fb.FeaturePropertiesT()
    else:
        raise MetadataError(f"tensor {t.name}: unknown content '{t.content}' (image, audio or feature)")
    return c


def _tensor(fb, t: TensorDoc):
    m = fb.TensorMetadataT()
    m.name, m.description, m.content = t.name, t.description or None, _content(fb, t)
    if t.mean is not None:
        norm = fb.NormalizationOptionsT()
        norm.mean, norm.std = [float(v) for v in t.mean], [float(v) for v in t.std]
        unit = fb.ProcessUnitT()
        unit.optionsType, unit.options = fb.ProcessUnitOptions.NormalizationOptions, norm
        m.processUnits = [unit]
    if t.min is not None:
        m.stats = fb.StatsT()
        m.stats.min, m.stats.max = [float(v) for v in t.min], [float(v) for v in t.max]
    if t.labels_file:
        f = fb.AssociatedFileT()
        f.name, f.description, f.type = t.labels_file, t.labels_description, fb.AssociatedFileType.TENSOR_AXIS_LABELS
        m.associatedFiles = [f]
    return m


# Schema members added after 1.0.0 and the version that added each (metadata_schema.fbs "Added in").
_FILE_TYPE_VERSIONS = {"VOCABULARY": (1, 0, 1), "SCANN_INDEX_FILE": (1, 4, 0)}
_UNIT_VERSIONS = {"BertTokenizerOptions": (1, 1, 0), "SentencePieceTokenizerOptions": (1, 1, 0),
                  "RegexTokenizerOptions": (1, 2, 1)}


def min_parser_version(meta) -> str:
    """The oldest metadata parser that understands every field set in ``meta`` (a ModelMetadataT)."""
    fb = _schema()
    found = [(1, 0, 0)]
    file_types = {getattr(fb.AssociatedFileType, k): v for k, v in _FILE_TYPE_VERSIONS.items()}
    unit_types = {getattr(fb.ProcessUnitOptions, k): v for k, v in _UNIT_VERSIONS.items()}

    def files(lst):
        for f in lst or []:
            found.append(file_types.get(f.type, (1, 0, 0)))
            if f.version is not None:
                found.append((1, 4, 1))

    def units(lst):
        for u in lst or []:
            found.append(unit_types.get(u.optionsType, (1, 0, 0)))

    files(meta.associatedFiles)
    for sg in meta.subgraphMetadata or []:
        for t in (sg.inputTensorMetadata or []) + (sg.outputTensorMetadata or []):
            files(t.associatedFiles)
            units(t.processUnits)
            if t.content is not None and t.content.contentPropertiesType == fb.ContentProperties.AudioProperties:
                found.append((1, 3, 0))
        files(sg.associatedFiles)
        for lst in (sg.inputProcessUnits, sg.outputProcessUnits):
            if lst is not None:
                found.append((1, 1, 0))
                units(lst)
        if sg.inputTensorGroups is not None or sg.outputTensorGroups is not None:
            found.append((1, 2, 0))
        if sg.customMetadata is not None:
            found.append((1, 5, 0))
    return ".".join(map(str, max(found)))


def metadata_buffer(doc: ModelDoc) -> bytes:
    """The ModelMetadata flatbuffer ("M001") for ``doc``, with its min_parser_version."""
    import flatbuffers

    fb = _schema()
    meta = fb.ModelMetadataT()
    meta.name, meta.description, meta.version = doc.name, doc.description or None, doc.version
    meta.author, meta.license = doc.author, doc.license
    sg = fb.SubGraphMetadataT()
    sg.name = doc.name
    sg.inputTensorMetadata = [_tensor(fb, t) for t in doc.inputs]
    sg.outputTensorMetadata = [_tensor(fb, t) for t in doc.outputs]
    meta.subgraphMetadata = [sg]
    meta.minParserVersion = min_parser_version(meta)
    b = flatbuffers.Builder(0)
    b.Finish(meta.Pack(b), METADATA_IDENTIFIER)
    return bytes(b.Output())


def _flatbuffer_utils():
    from ..keras_compat import tf

    tf()
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils


def _check(model, doc: ModelDoc) -> None:
    sub = model.subgraphs[0]
    for kind, docs, idx in (("input", doc.inputs, sub.inputs), ("output", doc.outputs, sub.outputs)):
        if len(docs) != len(idx):
            raise MetadataError(f"the model has {len(idx)} {kind} tensor(s), the metadata describes {len(docs)}")
    named = [t.labels_file for t in list(doc.inputs) + list(doc.outputs) if t.labels_file]
    missing = sorted(set(named) - set(doc.files))
    if missing:
        raise MetadataError(f"associated file(s) {', '.join(missing)} are named in the metadata but not given")


def _zip(prefix: bytes, files: dict[str, bytes]) -> bytes:
    """``prefix`` followed by a zip of stored members (offsets from the start of the whole file)."""
    buf = io.BytesIO()
    buf.write(prefix)
    with zipfile.ZipFile(buf, "a", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type, info.create_system, info.external_attr = zipfile.ZIP_STORED, 3, 0o644 << 16
            zf.writestr(info, files[name])
    return buf.getvalue()


def embed(tflite: bytes, doc: ModelDoc) -> bytes:
    """``tflite`` with ``doc`` as its TFLITE_METADATA and ``doc.files`` zipped after it.

    An existing TFLITE_METADATA entry is replaced; the graph, weights and tensors are unchanged.
    """
    from ..convert.flatbuffer import inline_buffers

    fu = _flatbuffer_utils()
    model = fu.convert_bytearray_to_object(bytearray(inline_buffers(tflite)))
    _check(model, doc)
    from tensorflow.lite.python import schema_py_generated as tfl

    buf = tfl.BufferT()
    buf.data = np.frombuffer(metadata_buffer(doc), dtype=np.uint8)
    model.metadata = model.metadata or []
    entry = next((m for m in model.metadata if m.name == METADATA_NAME), None)
    if entry is not None:
        model.buffers[entry.buffer] = buf
    else:
        model.buffers.append(buf)
        entry = tfl.MetadataT()
        entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
        model.metadata.append(entry)
    out = bytes(fu.convert_object_to_bytearray(model))
    return _zip(out, doc.files) if doc.files else out


def _metadata_bytes(data: bytes) -> Optional[bytes]:
    from ..keras_compat import tf

    tf()
    from tensorflow.lite.python import schema_py_generated as tfl

    model = tfl.Model.GetRootAsModel(data, 0)
    for i in range(model.MetadataLength()):
        m = model.Metadata(i)
        if m.Name() == METADATA_NAME:
            return model.Buffers(m.Buffer()).DataAsNumpy().tobytes()
    return None


def _plain(obj: Any) -> Any:
    """Schema object tree -> JSON-like dicts (bytes decoded, numpy arrays as lists)."""
    if obj is None or isinstance(obj, (int, float, str)):
        return obj
    if isinstance(obj, bytes):
        return obj.decode()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return {k: _plain(v) for k, v in vars(obj).items()}


def read_metadata(data: bytes) -> Optional[dict]:
    """The model's TFLITE_METADATA as a dict of schema field names (camelCase), or None without one.

    Raises MetadataError when the buffer is not a ModelMetadata flatbuffer ("M001").
    """
    raw = _metadata_bytes(data)
    if raw is None:
        return None
    fb = _schema()
    if not fb.ModelMetadata.ModelMetadataBufferHasIdentifier(raw, 0):
        raise MetadataError(f"TFLITE_METADATA has identifier {raw[4:8]!r}, not {METADATA_IDENTIFIER!r}")
    return _plain(fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAsModelMetadata(raw, 0)))


def associated_files(data: bytes) -> dict[str, bytes]:
    """The files zipped after the flatbuffer ({} when there are none)."""
    buf = io.BytesIO(data)
    if not zipfile.is_zipfile(buf):
        return {}
    with zipfile.ZipFile(buf) as zf:
        return {n: zf.read(n) for n in zf.namelist()}
