"""The model to profile, found from a .tflite file, an Android bundle or a firmware folder.

:func:`resolve_artifact` reads a path into a :class:`ResolvedArtifact` (the model's bytes, where
they came from); :func:`model_from_c_array` reads the bytes back from a ``model_data.cc``;
:func:`firmware_report` is the ``firmware`` block of a package folder's report.json.

Example::

    from edgepack.devices.artifact import resolve_artifact

    art = resolve_artifact(Path("build/firmware"))
    art.kind, art.model[4:8]        # "firmware", b"TFL3"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import DeviceError
from .result import Artifact


@dataclass(frozen=True)
class ResolvedArtifact:
    """The model to profile, found from a .tflite or a package folder.

    ``kind`` is "tflite" (a file given directly), "android" (a bundle with a
    .tflite), or "firmware" (a folder whose model comes from model_data.cc
    or the .tflite copy beside it). ``tflite_path`` is None when the bytes
    were read from a C array.
    """

    path: Path
    kind: str
    model: bytes
    tflite_path: Optional[Path]
    name: str

    def artifact(self) -> Artifact:
        """The result schema's Artifact for these bytes."""
        return Artifact.of_bytes(self.path, self.model)


_TFLITE_MAGIC = b"TFL3"
_ARRAY_RE = re.compile(r"(?:unsigned\s+char|uint8_t)\s+(\w+)\s*\[\s*\w*\s*\]\s*=\s*\{(.*?)\}",
                       re.S)


def _check_tflite(data: bytes, where: Path) -> bytes:
    if len(data) < 8 or data[4:8] != _TFLITE_MAGIC:
        raise DeviceError(f"{where} is not a TFLite model (no TFL3 identifier); "
                          "pass a .tflite file or a folder written by `edgepack package`")
    return data


def model_from_c_array(path: Path) -> bytes:
    """Bytes of the first ``unsigned char NAME[] = {...}`` array in a C/C++ source file.

    Example::

        model_from_c_array(Path("build/firmware/model_data.cc"))[4:8]  # b"TFL3"
    """
    text = path.read_text(errors="replace")
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    m = _ARRAY_RE.search(text)
    if not m:
        raise DeviceError(f"{path} holds no 'unsigned char NAME[] = {{...}}' model array; "
                          "regenerate it with `edgepack package --target tflm`")
    try:
        values = [int(tok, 0) for tok in m.group(2).replace("\n", " ").split(",") if tok.strip()]
        return bytes(values)
    except ValueError as e:
        raise DeviceError(f"{path}: the array {m.group(1)} is not a list of byte literals ({e}); "
                          "regenerate it with `edgepack package --target tflm`") from None


def _folder_tflites(folder: Path) -> list[Path]:
    top = sorted(folder.glob("*.tflite"))
    return top or sorted(p for p in folder.rglob("*.tflite") if p.is_file())


def resolve_artifact(path: Path) -> ResolvedArtifact:
    """Find the model in ``path``: a .tflite file, an Android bundle or a firmware folder.

    A folder's ``model.tflite`` wins; otherwise its single .tflite (searched
    recursively); otherwise the array in ``model_data.cc``. Anything else is a
    DeviceError naming the folder and what to pass.

    Example::

        resolve_artifact(Path("out/android")).tflite_path  # out/android/model.tflite
    """
    path = Path(path)
    if not path.exists():
        raise DeviceError(f"artifact {path} does not exist; pass a .tflite file or a package folder")
    if path.is_file():
        if path.suffix == ".cc" or path.suffix == ".c":
            return ResolvedArtifact(path, "firmware", _check_tflite(model_from_c_array(path), path),
                                    None, path.stem)
        return ResolvedArtifact(path, "tflite", _check_tflite(path.read_bytes(), path), path, path.stem)
    preferred = path / "model.tflite"
    candidates = [preferred] if preferred.is_file() else _folder_tflites(path)
    top = path / "model_data.cc"
    c_arrays = [top] if top.is_file() else sorted(path.rglob("model_data.cc"))
    kind = "firmware" if c_arrays else "android"
    if len(candidates) == 1:
        tfl = candidates[0]
        model = _check_tflite(tfl.read_bytes(), tfl)
        if c_arrays and model_from_c_array(c_arrays[0]) != model:
            raise DeviceError(f"{tfl} and {c_arrays[0]} hold different models; re-run "
                              "`edgepack package` so the folder is consistent")
        return ResolvedArtifact(path, kind, model, tfl, _name(path))
    if len(candidates) > 1:
        names = ", ".join(str(p.relative_to(path)) for p in candidates)
        raise DeviceError(f"package folder {path} holds several .tflite files ({names}); "
                          "pass the one to profile")
    if c_arrays:
        return ResolvedArtifact(path, "firmware", _check_tflite(model_from_c_array(c_arrays[0]),
                                                                c_arrays[0]), None, _name(path))
    raise DeviceError(f"package folder {path} holds no .tflite and no model_data.cc; "
                      "pass a .tflite or a folder written by `edgepack package`")


def _name(folder: Path) -> str:
    return folder.resolve().name or "model"



def firmware_report(folder: Path):
    """The ``firmware`` section of ``folder/report.json`` (:class:`edgepack.report.schema.Firmware`; None
    when the folder has no report or the report no firmware section).

    Example: ``firmware_report(Path("build/firmware")).device  # "nucleo-l4r5zi"``.
    """
    from ..errors import ReportError
    from ..report.schema import load_report

    if not Path(folder).is_dir() or not (Path(folder) / "report.json").is_file():
        return None
    try:
        return load_report(folder).firmware
    except ReportError as e:
        raise DeviceError(str(e)) from None
