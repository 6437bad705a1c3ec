"""The one loader behind every explicit registry ("name" -> "module:attribute" tables).

Registries are plain dicts in the module that owns the concept (passes, targets, checks,
devices, CLI commands, the public API); entries are imported only when used, so reading a
recipe or running ``--help`` does not import TensorFlow.

Example::

    TARGETS = {"android": "edgepack.targets.android:AndroidTarget"}
    cls = load_entry(TARGETS, "android", what="target", plural="targets")
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import EdgepackError, UsageError


def import_entry(ref: str) -> Any:
    """Import ``"package.module:attribute"`` and return the attribute."""
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


def load_entry(table: dict[str, str], name: str, what: str, plural: str,
               error: type[EdgepackError] = UsageError) -> Any:
    """The object registered under ``name``; ``error`` naming the known names when there is none."""
    try:
        ref = table[name]
    except KeyError:
        known = ", ".join(sorted(table)) or "none"
        raise error(f"unknown {what} '{name}'; known {plural}: {known}") from None
    return import_entry(ref)
