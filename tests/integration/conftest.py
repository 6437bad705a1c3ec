"""The integration matrix's models, built once per test process (see user_models.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def user_models(tmp_path_factory):
    """name -> model file: lazily built (a cell pays only for the models it uses)."""
    import user_models as um

    out = tmp_path_factory.mktemp("user_models")
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = um.build_keras3(out) if name == "keras3_cnn" else um.build_tf_keras(out, name)
        return built[name]

    return get
