"""The only module that knows tf_keras (Keras 2) from Keras 3.

tfmot 0.8.1 needs Keras 2, which TensorFlow 2.21 serves only when
``TF_USE_LEGACY_KERAS=1`` is set before TensorFlow is first imported. Nothing
happens at import time: the variable is set when :func:`tf` or :func:`keras`
is first called.

Example::

    from edgepack.keras_compat import keras
    model = keras().Sequential([...])
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

from .errors import EdgepackError


def _ensure_legacy() -> None:
    if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise EdgepackError(
            "TensorFlow was imported before edgepack could select Keras 2: "
            "set TF_USE_LEGACY_KERAS=1 in the environment or import edgepack first"
        )
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # oneDNN kernels crashed (heap corruption in model.fit) fine-tuning pruned conv models,
    # and make float results depend on the CPU; the plain kernels are exact and stable.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def tf() -> ModuleType:
    """Return the ``tensorflow`` module, with Keras 2 selected."""
    _ensure_legacy()
    if "tensorflow" not in sys.modules:
        from .fdcapture import capture_fd2

        with capture_fd2():  # absl/oneDNN/CUDA start-up chatter on fd 2
            import tensorflow

            tensorflow.config.list_physical_devices()
    import tensorflow

    return tensorflow


def keras() -> ModuleType:
    """Return ``tf_keras`` (Keras 2), the Keras every edgepack pass works on."""
    tf()
    import tf_keras

    return tf_keras


def tfmot() -> ModuleType:
    """Return ``tensorflow_model_optimization`` (needs Keras 2)."""
    tf()
    import tensorflow_model_optimization

    return tensorflow_model_optimization


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TF ops deterministic."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    t = tf()
    t.random.set_seed(seed)
    keras().utils.set_random_seed(seed)
    try:
        t.config.experimental.enable_op_determinism()
    except AttributeError:  # older TF without the switch
        pass
