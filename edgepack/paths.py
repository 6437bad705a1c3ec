"""Where edgepack's data folders live (templates/, device_profiles/, calibration_data/).

In a source checkout (and an editable install) they are the repo-level folders
beside the ``edgepack`` package; a wheel installs them under ``<prefix>/share/edgepack``.

Example::

    data_dir("device_profiles") / "nucleo-l4r5zi.yaml"
"""

from __future__ import annotations

import sys
from pathlib import Path

from .errors import EdgepackError

DATA_FOLDERS = ("templates", "device_profiles", "calibration_data")


def data_dir(name: str) -> Path:
    """Return the data folder ``name``; raise if this installation lacks it."""
    if name not in DATA_FOLDERS:
        raise ValueError(f"unknown data folder {name!r}; one of {DATA_FOLDERS}")
    here = Path(__file__).resolve().parent
    for base in (here.parent, Path(sys.prefix) / "share" / "edgepack"):
        if (base / name).is_dir():
            return base / name
    raise EdgepackError(f"edgepack data folder '{name}' is missing; reinstall edgepack from its source tree")
