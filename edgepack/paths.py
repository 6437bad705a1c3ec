"""Where edgepack's data folders live (targets/, device_profiles/, calibration_data/).

In a source checkout they sit at the repository root, next to the ``edgepack``
package; an installed wheel carries them under ``edgepack/_data/``.

Example::

    templates = data_dir("targets") / "tflm"
"""

from __future__ import annotations

from pathlib import Path

from .errors import EdgepackError

DATA_FOLDERS = ("targets", "device_profiles", "calibration_data")
_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The folder ``name`` (one of DATA_FOLDERS); raises EdgepackError when it is missing."""
    if name not in DATA_FOLDERS:
        raise EdgepackError(f"unknown data folder '{name}'; known: {', '.join(DATA_FOLDERS)}")
    for candidate in (_PACKAGE.parent / name, _PACKAGE / "_data" / name):
        if candidate.is_dir():
            return candidate
    raise EdgepackError(f"edgepack data folder '{name}' not found next to {_PACKAGE}; reinstall edgepack")
