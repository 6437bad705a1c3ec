"""Capture what C++ code writes to file descriptor 2 (TF/TFLM logging).

Python's ``sys.stderr`` redirection cannot see native writes; this swaps fd 2
itself and restores it, even on error.

Example::

    with capture_fd2() as cap:
        interpreter.print_allocations()
    text = cap.text()
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator


class Captured:
    def __init__(self, fh):
        self._fh = fh
        self._text = ""

    def text(self) -> str:
        """Everything written to fd 2 inside the block (read after the block)."""
        return self._text


@contextlib.contextmanager
def capture_fd2() -> Iterator[Captured]:
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        cap = Captured(sink)
        os.dup2(sink.fileno(), 2)
        try:
            yield cap
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            cap._text = sink.read().decode(errors="replace")
