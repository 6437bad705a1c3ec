"""Calibration, evaluation and training data.

The contract
------------
* ``.npz``: array ``x`` holds the samples (first axis = sample); optional
  integer array ``y`` holds class labels (evaluation / training).
* ``.npy``: the samples alone.
* a folder of images (``.png``/``.jpg``/``.bmp``): read with Pillow, resized
  to the model's input height/width, grayscale when the model has 1 channel;
  a sub-folder per class gives labels (sorted folder names = class index).

Samples are raw (e.g. uint8 pixels). :class:`Preprocess` turns them into the
model's float input: ``x_model = (x - mean) * scale``; the same spec goes into
the Android manifest so the app applies the same transform.

Checks: non-empty, finite (no NaN/inf), per-sample shape equal to the model's
input shape (a missing trailing channel axis of size 1 is added), numeric dtype.

Example::

    ds = load_dataset("calibration_data/mnist/calib.npz", limit=200)
    x = ds.model_input(Preprocess(scale=1/255), input_shape=(28, 28, 1))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}


class Preprocess(BaseModel):
    """How raw samples become model input: ``(x - mean) * scale``."""

    model_config = ConfigDict(extra="forbid")
    scale: float = 1.0
    mean: float | list[float] = 0.0

    def apply(self, x: np.ndarray) -> np.ndarray:
        mean = np.asarray(self.mean, dtype=np.float32)
        return ((x.astype(np.float32) - mean) * np.float32(self.scale)).astype(np.float32)


class DataSpec(BaseModel):
    """Where data comes from and how much of it to use (a recipe's ``data:`` block)."""

    model_config = ConfigDict(extra="forbid")
    preprocess: Preprocess = Field(default_factory=Preprocess)
    calibration_limit: int = Field(500, gt=0)


@dataclass
class Dataset:
    x: np.ndarray
    y: Optional[np.ndarray]
    source: str

    def __len__(self) -> int:
        return int(self.x.shape[0])

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
        out = pre.apply(x)
        if not np.isfinite(out).all():
            raise DataError(f"{self.source}: preprocessing produced NaN or inf; check scale/mean")
        return out


def _check(x: np.ndarray, y: Optional[np.ndarray], source: str) -> None:
    if x.ndim < 2 or x.shape[0] == 0:
        raise DataError(f"{source}: no samples (array x has shape {x.shape}); give at least one sample")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DataError(f"{source}: samples have dtype {x.dtype}; give a numeric array")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).reshape(x.shape[0], -1).any(axis=1).sum())
        raise DataError(f"{source}: {bad} samples contain NaN or inf; clean or drop them")
    if y is not None:
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{source}: labels y have dtype {y.dtype}; give integer class indices")
        if y.shape[0] != x.shape[0]:
            raise DataError(f"{source}: {x.shape[0]} samples but {y.shape[0]} labels; they must match")


def _load_npz(path: Path) -> tuple[np.ndarray, Optional[np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z.files:
                raise DataError(f"{path}: no array named 'x' (found {z.files}); save samples as x=...")
            x = z["x"]
            y = z["y"].reshape(-1) if "y" in z.files else None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from e
    return x, y


def _load_images(path: Path, image_size: Optional[tuple[int, int, int]]) -> tuple[np.ndarray, Optional[np.ndarray]]:
    from PIL import Image

    classes = sorted(p.name for p in path.iterdir() if p.is_dir())
    files: list[tuple[Path, Optional[int]]] = []
    if classes:
        for i, c in enumerate(classes):
            files += [(f, i) for f in sorted((path / c).iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    else:
        files = [(f, None) for f in sorted(path.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
    arrs = []
    for f, _ in files:
        try:
            img = Image.open(f)
            if image_size is not None:
                h, w, c = image_size
                img = img.convert("L" if c == 1 else "RGB").resize((w, h))
            arrs.append(np.asarray(img))
        except OSError as e:
            raise DataError(f"{f}: not a readable image ({e})") from e
    x = np.stack(arrs)
    y = np.array([lbl for _, lbl in files], dtype=np.int64) if classes else None
    return x, y


def load_dataset(
    path: str | Path,
    limit: Optional[int] = None,
    image_size: Optional[tuple[int, int, int]] = None,
) -> Dataset:
    """Read samples (and labels) from .npz, .npy or an image folder; see module doc."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such data file or folder")
    if path.is_dir():
        x, y = _load_images(path, image_size)
    elif path.suffix == ".npz":
        x, y = _load_npz(path)
    elif path.suffix == ".npy":
        try:
            x, y = np.load(path, allow_pickle=False), None
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: not a readable .npy file ({e})") from e
    else:
        raise DataError(f"{path}: unknown data format; give an .npz (x, y), an .npy or an image folder")
    _check(x, y, str(path))
    if limit is not None:
        x = x[:limit]
        y = None if y is None else y[:limit]
    return Dataset(x=x, y=y, source=str(path))
