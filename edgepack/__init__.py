"""edgepack: compress, convert, verify and profile Keras models for phones and microcontrollers.

The public API, imported lazily (importing edgepack has no side effects and
does not import TensorFlow)::

    from pathlib import Path
    import edgepack

    report = edgepack.package(edgepack.PackageRequest(
        model=Path("examples/mnist/model.h5"), out=Path("build/android"),
        recipe=edgepack.Recipe.from_yaml(Path("examples/mnist/recipe.yaml")),
        calibration=Path("calibration_data/mnist/calib.npz")))
    result = edgepack.profile("build/android", device="host")
    print(result.latency.median_us)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = {
    "package": "edgepack.pipeline:package",
    "PackageRequest": "edgepack.pipeline:PackageRequest",
    "Recipe": "edgepack.recipe:Recipe",
    "QuantizeConfig": "edgepack.recipe:QuantizeConfig",
    "load_model": "edgepack.load:load_model",
    "load_dataset": "edgepack.data:load_dataset",
    "inspect": "edgepack.inspect:inspect_path",
    "profile": "edgepack.devices.registry:profile",
    "open_device": "edgepack.devices.registry:open_device",
    "ProfileResult": "edgepack.devices.result:ProfileResult",
    "EdgepackError": "edgepack.errors:EdgepackError",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'edgepack' has no attribute {name!r}")
    from .registry import import_entry

    return import_entry(_API[name])
