"""Calibration, evaluation and training data.

The contract
------------
* ``.npz``: array ``x`` holds the samples (first axis = sample); optional
  integer array ``y`` holds class labels (evaluation / training).
* a model with several inputs: an ``.npz`` with one array per input, named after the model's
  input (the Keras input layer name) or ``x0``, ``x1``, ... in the model's input order (the name
  wins when both are there); ``y`` as above. A single-input model reads ``x`` as before.
* ``.npy``: the samples alone.
* a folder of images (``.png``/``.jpg``/``.bmp``): read with Pillow, resized
  to the model's input height/width, grayscale when the model has 1 channel;
  a sub-folder per class gives labels (sorted folder names = class index).

Samples are raw (e.g. uint8 pixels). :class:`Preprocess` turns them into the
model's float input: ``x_model = (x - mean) * scale``; the same spec goes into
the Android manifest so the app applies the same transform.

Checks: non-empty, finite (no NaN/inf), per-sample shape equal to the model's
input shape (a missing trailing channel axis of size 1 is added), real numeric
dtype (complex and object arrays are refused), labels within the model's classes
(:func:`check_labels`).

Caps, checked from headers before anything is read: a data set may hold at most
``EDGEPACK_MAX_DATA_BYTES`` bytes of samples and labels (default 2 GiB; suffixes
K/M/G accepted, e.g. ``8G``), an image at most ``EDGEPACK_MAX_IMAGE_PIXELS``
pixels (default 64 million).

Example::

    ds = load_dataset("calibration_data/mnist/calib.npz", limit=200)
    x = ds.model_input(Preprocess(scale=1/255), input_shape=(28, 28, 1))
"""

from __future__ import annotations

import os
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .errors import DataError, UsageError
from .samples import Inputs

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}
MAX_DATA_BYTES_ENV, DEFAULT_MAX_DATA_BYTES = "EDGEPACK_MAX_DATA_BYTES", 2 << 30
MAX_IMAGE_PIXELS_ENV, DEFAULT_MAX_IMAGE_PIXELS = "EDGEPACK_MAX_IMAGE_PIXELS", 64_000_000
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
# what a corrupt .npy/.npz/zip member raises while being read
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, struct.error,
                NotImplementedError, RuntimeError, KeyError)


class Preprocess(BaseModel):
    """How raw samples become model input: ``(x - mean) * scale``."""

    model_config = ConfigDict(extra="forbid")
    scale: float = 1.0
    mean: float | list[float] = 0.0

    def apply(self, x: np.ndarray) -> np.ndarray:
        mean = np.asarray(self.mean, dtype=np.float32)
        return ((x.astype(np.float32) - mean) * np.float32(self.scale)).astype(np.float32)


class DataSpec(BaseModel):
    """Where data comes from and how much of it to use (a recipe's ``data:`` block).

    ``preprocess`` applies to every model input; ``inputs: {name: {scale, mean}}`` gives one input
    of a several-input model its own (e.g. pixels scaled, a metadata vector as is)."""

    model_config = ConfigDict(extra="forbid")
    preprocess: Preprocess = Field(default_factory=Preprocess)
    inputs: dict[str, Preprocess] = Field(default_factory=dict)
    calibration_limit: int = Field(500, gt=0)
    # A model with several outputs: the one labels and the accuracy gate apply to, by model output name
    # (unset: the first; see edgepack.outputs). Also --output NAME.
    output: Optional[str] = None

    def for_input(self, name: str) -> Preprocess:
        """The preprocessing of the model input ``name``."""
        return self.inputs.get(name, self.preprocess)

    def check_inputs(self, names: Sequence[str]) -> None:
        """Refuse ``data.inputs`` entries that name no model input."""
        unknown = sorted(set(self.inputs) - set(names))
        if unknown:
            raise DataError(f"recipe data.inputs names {', '.join(unknown)}, not an input of the model (its inputs: "
                            f"{', '.join(names)}); use the Keras input layer names")


@dataclass
class Dataset:
    x: np.ndarray
    y: Optional[np.ndarray]
    source: str

    def __len__(self) -> int:
        return len(self.x)

    def model_input(self, pre: Preprocess, input_shape: Sequence[int]) -> np.ndarray:
        """Preprocessed float32 samples, checked against ``input_shape`` (no batch axis)."""
        x = self.x
        want = tuple(int(d) for d in input_shape)
        if x.shape[1:] != want and x.shape[1:] + (1,) == want:
            x = x[..., None]
        if x.shape[1:] != want:
            raise DataError(
                f"{self.source}: samples have shape {x.shape[1:]}, the model expects {want}; "
                "reshape the data or pick the matching model"
            )
        _check_mean(pre, want)
        out = pre.apply(x)
        if not np.isfinite(out).all():
            raise DataError(f"{self.source}: preprocessing produced NaN or inf; check scale/mean")
        return out


def model_inputs(ds: Dataset, spec: DataSpec, inputs: Sequence[tuple[str, Sequence[int]]]):
    """Preprocessed model input of ``ds`` for the model's ``inputs`` ((name, shape) pairs): one float32
    array for a single-input model, an :class:`~edgepack.samples.Inputs` (model input order) otherwise.

    Example: ``model_inputs(ds, DataSpec(), [("image", (8, 8, 1)), ("meta", (3,))])``
    """
    spec.check_inputs([n for n, _ in inputs])
    if len(inputs) == 1:
        return ds.model_input(spec.for_input(inputs[0][0]), inputs[0][1])
    if not isinstance(ds.x, Inputs):
        raise DataError(f"{ds.source}: the model has {len(inputs)} inputs ({', '.join(n for n, _ in inputs)}); "
                        "give one array per input (.npz keys = input names, or x0, x1, ...)")
    arrays = []
    for (name, shape), arr in zip(inputs, ds.x.arrays):
        part = Dataset(x=arr, y=None, source=f"{ds.source} input '{name}'")
        arrays.append(part.model_input(spec.for_input(name), shape))
    return Inputs(tuple(arrays), tuple(n for n, _ in inputs))


def _check_mean(pre: Preprocess, want: tuple[int, ...]) -> None:
    if not isinstance(pre.mean, list):
        return
    channels = want[-1] if want else 1
    if len(pre.mean) not in (1, channels):
        raise DataError(f"recipe data.preprocess.mean has {len(pre.mean)} values but the model input {want} "
                        f"has {channels} channel(s); give one value, or one per channel")


def _env_limit(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip().upper().removesuffix("B").removesuffix("I")
    if not raw:
        return default
    unit = raw[-1] if raw[-1] in _UNITS else ""
    try:
        value = int(float(raw[: len(raw) - len(unit)]) * _UNITS[unit])
    except (ValueError, OverflowError):
        value = 0
    if value <= 0:
        raise UsageError(f"{name}={os.environ[name]!r} is not a positive size; give e.g. 4G or 500000000")
    return value


def max_data_bytes() -> int:
    """The data-set size cap in bytes (``EDGEPACK_MAX_DATA_BYTES``, default 2 GiB)."""
    return _env_limit(MAX_DATA_BYTES_ENV, DEFAULT_MAX_DATA_BYTES)


def _refuse_big(source: str, nbytes: int, what: str) -> None:
    cap = max_data_bytes()
    if nbytes > cap:
        raise DataError(f"{source}: {what} {nbytes:,} bytes, more than the {cap:,}-byte data cap; "
                        f"use a smaller set or raise it with {MAX_DATA_BYTES_ENV}=BYTES (e.g. 8G)")


def _check_dtype(dtype: np.dtype, source: str, name: str) -> None:
    if dtype.kind == "c":
        raise DataError(f"{source}: array {name} is complex-valued ({dtype}); give real values "
                        "(e.g. x.real or np.abs(x)): the imaginary part would be dropped")
    if dtype.hasobject or dtype.kind not in "biuf":
        raise DataError(f"{source}: array {name} has dtype {dtype}; give a numeric (int, uint, float, bool) array")


def _npy_header(fp, source: str, name: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data bytes) from a .npy header, without reading the data."""
    from numpy.lib import format as npf

    try:
        version = npf.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = npf.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = npf.read_array_header_2_0(fp)
        else:
            shape, _, dtype = npf._read_array_header(fp, version)
    except _READ_ERRORS + (SyntaxError, TypeError) as e:
        raise DataError(f"{source}: array {name} has no readable .npy header ({e}); re-save it with numpy.save") from e
    _check_dtype(dtype, source, name)
    nbytes = int(np.prod(shape, dtype=object) if shape else 1) * dtype.itemsize
    return tuple(int(d) for d in shape), dtype, nbytes


def _check(x: Any, y: Optional[np.ndarray], source: str) -> None:
    if isinstance(x, Inputs):
        for name, arr in zip(x.names, x.arrays):
            _check(arr, None, f"{source} input '{name}'")
            if arr.shape[0] != len(x):
                raise DataError(f"{source}: input '{name}' has {arr.shape[0]} samples but input '{x.names[0]}' has "
                                f"{len(x)}; give every input the same samples")
        if y is not None:
            _check(x.arrays[0], y, source)
        return
    if x.ndim < 2 or x.shape[0] == 0:
        raise DataError(f"{source}: no samples (array x has shape {x.shape}); give at least one sample")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DataError(f"{source}: samples have dtype {x.dtype}; give a numeric array")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).reshape(x.shape[0], -1).any(axis=1).sum())
        raise DataError(f"{source}: {bad} samples contain NaN or inf; clean or drop them")
    if np.iscomplexobj(x):
        raise DataError(f"{source}: samples are complex-valued ({x.dtype}); give real values")
    if y is not None:
        if not np.issubdtype(y.dtype, np.integer):
            seen = ", ".join(f"{v:g}" for v in np.unique(y.reshape(-1))[:5]) if y.dtype.kind in "fb" else ""
            raise DataError(f"{source}: labels y have dtype {y.dtype}{f' (values {seen})' if seen else ''}; "
                            "give integer class indices (0 .. classes-1)")
        if y.shape[0] != x.shape[0]:
            raise DataError(f"{source}: {x.shape[0]} samples but {y.shape[0]} labels; they must match")


def _input_keys(path: Path, found: Sequence[str], inputs: Optional[Sequence[str]]) -> list[str]:
    """The .npz key of each model input: ``x`` for one input; the input's name, else ``x<i>``, for several."""
    if not inputs or len(inputs) == 1:
        if "x" not in found:
            raise DataError(f"{path}: no array named 'x' (found {sorted(found)}); save samples as x=...")
        return ["x"]
    keys = []
    for i, name in enumerate(inputs):
        key = name if name in found else f"x{i}"
        if key not in found:
            raise DataError(f"{path}: no array for model input '{name}' (input {i}; found {sorted(found)}); "
                            f"save it as {name}=... or x{i}=...")
        keys.append(key)
    return keys


def _npz_headers(path: Path, inputs: Optional[Sequence[str]] = None) -> list[str]:
    """Check the sample arrays (and y) of an .npz from their headers: dtype, declared sizes vs the cap and
    the file; return the key of each model input's array."""
    total = 0
    with zipfile.ZipFile(path) as zf:
        names = {n.removesuffix(".npy"): n for n in zf.namelist()}
        keys = _input_keys(path, list(names), inputs)
        for key in (*keys, "y"):
            if key not in names:
                continue
            info = zf.getinfo(names[key])
            with zf.open(info) as fp:
                shape, dtype, nbytes = _npy_header(fp, str(path), key)
                if nbytes > info.file_size:
                    raise DataError(f"{path}: array {key} declares {shape} {dtype} ({nbytes:,} bytes) but its "
                                    f"member holds {info.file_size:,} bytes; the file is truncated or corrupt")
            total += nbytes
    _refuse_big(str(path), total, "arrays x and y declare" if keys == ["x"] else
                f"arrays {', '.join(keys)} and y declare")
    return keys


def _load_npz(path: Path, inputs: Optional[Sequence[str]] = None) -> tuple[Any, Optional[np.ndarray]]:
    try:
        keys = _npz_headers(path, inputs)
        with np.load(path, allow_pickle=False) as z:
            arrays = [z[k] for k in keys]
            y = z["y"] if "y" in z.files else None
    except _READ_ERRORS as e:
        raise DataError(f"{path}: not a readable .npz file ({e}); re-save it with numpy.savez") from e
    x = arrays[0] if len(arrays) == 1 else Inputs(tuple(arrays), tuple(inputs or ()))
    n = len(x)
    if y is not None and y.ndim == 2 and y.shape[1] > 1 and y.shape[0] == n:
        raise DataError(f"{path}: labels y have shape {y.shape} (one-hot?); give class indices, "
                        "e.g. y.argmax(axis=1)")
    return x, (None if y is None else y.reshape(-1))


def _load_npy(path: Path, limit: Optional[int]) -> np.ndarray:
    try:
        with open(path, "rb") as fp:
            shape, dtype, nbytes = _npy_header(fp, str(path), "x")
            held = os.fstat(fp.fileno()).st_size - fp.tell()
        if nbytes > held:
            raise DataError(f"{path}: header declares {shape} {dtype} ({nbytes:,} bytes) but the file holds "
                            f"{held:,} bytes of data; the file is truncated or corrupt")
        rows = shape[0] if shape else 1
        used = nbytes if limit is None or rows <= limit else nbytes // max(rows, 1) * limit
        _refuse_big(str(path), used, "the samples used take")
        if used < nbytes:  # read only the first `limit` samples
            return np.array(np.load(path, mmap_mode="r", allow_pickle=False)[:limit])
        return np.load(path, allow_pickle=False)
    except _READ_ERRORS as e:
        raise DataError(f"{path}: not a readable .npy file ({e}); re-save it with numpy.save") from e


def _open_image(f: Path, max_pixels: int):
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(f)  # lazy: reads the header only
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
            raise DataError(f"{f}: image too large to decode ({e}); downscale it") from None
    w, h = img.size
    if w * h > max_pixels:
        img.close()
        raise DataError(f"{f}: image is {w}x{h} ({w * h:,} pixels), more than the {max_pixels:,}-pixel limit; "
                        f"downscale it or raise {MAX_IMAGE_PIXELS_ENV}")
    return img


def _image_files(path: Path) -> tuple[list[tuple[Path, Optional[int]]], bool]:
    classes = sorted(p.name for p in path.iterdir() if p.is_dir())
    files: list[tuple[Path, Optional[int]]] = []
    if classes:
        for i, c in enumerate(classes):
            files += [(f, i) for f in sorted((path / c).iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    else:
        files = [(f, None) for f in sorted(path.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
    return files, bool(classes)


def _load_images(path: Path, image_size: Optional[tuple[int, int, int]]) -> tuple[np.ndarray, Optional[np.ndarray]]:
    files, labelled = _image_files(path)
    max_pixels = _env_limit(MAX_IMAGE_PIXELS_ENV, DEFAULT_MAX_IMAGE_PIXELS)
    if image_size is not None:
        _refuse_big(str(path), len(files) * int(np.prod(image_size)), f"{len(files)} images resized take")
    arrs: list[np.ndarray] = []
    total = 0
    for f, _ in files:
        try:
            with _open_image(f, max_pixels) as img:
                if image_size is not None:
                    h, w, c = image_size
                    img = img.convert("L" if c == 1 else "RGB").resize((w, h))
                arr = np.asarray(img)
        except (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, TypeError) as e:
            raise DataError(f"{f}: not a readable image ({e})") from e
        if arrs and arr.shape != arrs[0].shape:
            raise DataError(f"{f}: image shape {arr.shape} differs from {files[0][0].name}'s {arrs[0].shape}; "
                            "give images of one size and mode (or a model with an image input)")
        total += arr.nbytes
        _refuse_big(str(path), total, "the images decoded so far take")
        arrs.append(arr)
    x = np.stack(arrs)
    y = np.array([lbl for _, lbl in files], dtype=np.int64) if labelled else None
    return x, y


def check_labels(num_classes: int, sets: Iterable[tuple[Any, Any]]) -> None:
    """Refuse labels outside ``0 .. num_classes-1`` (the model's outputs) in any (source, data) pair.

    ``data`` is anything with a ``y`` array (or None). Wrong labels would give a meaningless
    accuracy (0% float and packaged: "drop 0.00 pt" passes any gate).

    Example::

        check_labels(10, [("eval.npz", Labeled(x, y))])  # DataError if y holds 10 or -1
    """
    for source, data in sets:
        y = getattr(data, "y", None)
        if y is None:
            continue
        bad = (y < 0) | (y >= num_classes)
        if bad.any():
            vals = np.unique(y[bad])
            shown = ", ".join(str(int(v)) for v in vals[:5]) + (", ..." if vals.size > 5 else "")
            raise DataError(f"{source}: {int(bad.sum())} of {y.size} labels are outside the model's "
                            f"{num_classes} classes (0..{num_classes - 1}): {shown}; fix the labels or "
                            "pick the matching model")


def load_dataset(
    path: str | Path,
    limit: Optional[int] = None,
    image_size: Optional[tuple[int, int, int]] = None,
    inputs: Optional[Sequence[str]] = None,
) -> Dataset:
    """Read samples (and labels) from .npz, .npy or an image folder; see module doc.

    ``inputs``: the model's input names; with several, an .npz with one array per input is read
    (``Dataset.x`` is then an :class:`~edgepack.samples.Inputs`)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such data file or folder")
    if inputs and len(inputs) > 1:
        if path.is_dir() or path.suffix != ".npz":
            raise DataError(f"{path}: the model has {len(inputs)} inputs ({', '.join(inputs)}); give an .npz with "
                            "one array per input (keys = input names, or x0, x1, ...)")
        x, y = _load_npz(path, inputs)
    elif path.is_dir():
        x, y = _load_images(path, image_size)
    elif path.suffix == ".npz":
        x, y = _load_npz(path)
    elif path.suffix == ".npy":
        x, y = _load_npy(path, limit), None
    else:
        raise DataError(f"{path}: unknown data format; give an .npz (x, y), an .npy or an image folder")
    _check(x, y, str(path))
    if limit is not None:
        x = x[:limit]
        y = None if y is None else y[:limit]
    return Dataset(x=x, y=y, source=str(path))


def _arrays_for(x: Any, inputs: Sequence[str], source: str) -> Inputs:
    """In-memory samples of a several-input model: a list (model input order) or a dict by input name."""
    if isinstance(x, dict):
        missing = [n for n in inputs if n not in x]
        if missing:
            raise DataError(f"{source}: no array for model input '{missing[0]}' (found {sorted(x)}); "
                            "give one array per input name")
        x = [x[n] for n in inputs]
    if not isinstance(x, list) or len(x) != len(inputs):
        raise DataError(f"{source}: the model has {len(inputs)} inputs ({', '.join(inputs)}); give a list of "
                        f"{len(inputs)} arrays in input order, or a dict by input name")
    arrays = tuple(np.asarray(a) for a in x)
    for name, a in zip(inputs, arrays):
        _check_dtype(a.dtype, source, f"for input '{name}'")
    return Inputs(arrays, tuple(inputs))


def from_arrays(x: Any, y: Any = None, source: str = "array", limit: Optional[int] = None,
                inputs: Optional[Sequence[str]] = None) -> Dataset:
    """A Dataset from in-memory samples (and labels), with the same checks as a file's.

    A model with several ``inputs`` (names) takes a list of arrays (input order) or a dict by name.

    Example: ``from_arrays(np.zeros((8, 28, 28)), np.arange(8) % 10, "calibration array")``
    """
    if inputs and len(inputs) > 1:
        x = _arrays_for(x, inputs, source)
    else:
        x = np.asarray(x)
        _check_dtype(x.dtype, source, "x")
    y = None if y is None else np.asarray(y)
    _check(x, y, source)
    if limit is not None:
        x, y = x[:limit], (None if y is None else y[:limit])
    return Dataset(x=x, y=y, source=source)
