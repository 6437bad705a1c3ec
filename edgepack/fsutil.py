"""Atomic writes and hashing: a failed run leaves nothing half-written.

Example::

    with staged_dir(Path("build/android"), force=False) as tmp:
        (tmp / "model.tflite").write_bytes(data)
    # build/android now exists, complete, or not at all
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Optional

from .errors import DataError, OutputExistsError, OutputWriteError, UsageError


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_path(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (relative names and contents, sorted)."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(path)).encode() + b"\0")
            h.update(f.read_bytes())
        return h.hexdigest()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _real(p: Path) -> Path:
    return Path(os.path.realpath(os.path.abspath(os.path.expanduser(str(p)))))


def _within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_spares_inputs(out: Path, inputs: Iterable[Optional[Path]], option: str = "--out") -> None:
    """Refuse an output folder that equals, contains or lies inside an input (symlinks resolved).

    With ``--force`` the output folder is deleted and replaced: it must hold no input (model,
    data, labels, recipe), and it must not lie inside an input folder (a SavedModel or an image
    folder would change under the reader). Raises OutputWriteError, before any work.

    Example::

        check_spares_inputs(Path("."), [Path("model.h5")])  # OutputWriteError: . contains model.h5
    """
    real_out = _real(out)
    for place, name in ((Path.cwd(), "the current folder"), (Path.home(), "your home folder")):
        if _within(_real(place), real_out):
            what = "is" if _real(place) == real_out else "contains"
            raise OutputWriteError(f"{option} {out} {what} {name}; --force would delete it: "
                                   f"choose an {option} folder of its own")
    for inp in inputs:
        if inp is None:
            continue
        real_in = _real(inp)
        if _within(real_in, real_out):
            what = "is" if real_in == real_out else "contains"
            raise OutputWriteError(f"{option} {out} {what} the input {inp}; --force would delete it: "
                                   f"choose an {option} folder that holds none of the inputs")
        if real_in.is_dir() and _within(real_out, real_in):
            raise OutputWriteError(f"{option} {out} lies inside the input folder {inp}; "
                                   f"choose an {option} outside it")


def check_file_spares_inputs(path: Path, inputs: Iterable[Optional[Path]], option: str = "--out",
                             folder_files: bool = True) -> None:
    """Refuse writing the file ``path`` when that would overwrite an input (symlinks resolved).

    An input is a given file, or (with ``folder_files``) an existing file inside a given folder
    (a package folder is read as a whole); a new file inside an input folder is fine.

    Example::

        check_file_spares_inputs(Path("m.tflite"), [Path("m.tflite")])  # OutputWriteError
    """
    real = _real(path)
    if real.is_dir():
        raise OutputWriteError(f"{option} {path}: is a folder; give a file name")
    for inp in inputs:
        if inp is None:
            continue
        real_in = _real(inp)
        inside = folder_files and real_in.is_dir() and real.exists() and _within(real, real_in)
        if real == real_in or inside:
            where = "is" if real == real_in else "is a file of"
            raise OutputWriteError(f"{option} {path} {where} the input {inp}; writing it would overwrite "
                                   f"the input: choose another {option}")


def read_text(path: Path, what: str) -> str:
    """A user's UTF-8 text file; DataError (one line) when it is unreadable or not text.

    Example::

        names = read_text(Path("labels.txt"), "labels file").splitlines()
    """
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: {what} is not UTF-8 text (byte {e.start}); give a text file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read the {what} ({e.strerror or e})") from None


def check_out_dir(out: Path, force: bool, inputs: Iterable[Optional[Path]] = ()) -> None:
    """Fail before any work when ``out`` exists and ``force`` is not set, or holds an input."""
    out = Path(out)
    check_spares_inputs(out, inputs)
    if out.exists() and not force:
        raise OutputExistsError(f"{out}: output folder exists; pass --force to replace it or choose another --out")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder; choose another --out")


def _write_error(path: Path, e: OSError) -> OutputWriteError:
    return OutputWriteError(f"{path}: cannot write the output ({e.strerror or e}); "
                            "free space or choose a writable location")


@contextlib.contextmanager
def staged_dir(out: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success rename it to ``out``.

    An OSError while staging (read-only file system, full disk, no permission) becomes
    an OutputWriteError naming ``out``; the staging folder is removed and ``out`` is untouched.
    """
    out = Path(out)
    check_out_dir(out, force)
    tmp: Optional[Path] = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        yield tmp
        os.chmod(tmp, 0o755)
        _swap_in(tmp, out)
    except OSError as e:
        raise _write_error(out, e) from e
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.rename(tmp, out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        os.rename(old, out)  # put the previous output back
        raise
    if old.is_symlink():  # --out was a link: drop the link, never the folder it points at
        old.unlink()
    else:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_texts(files: dict[Path, str]) -> None:
    """Write several files together: every text goes to a temporary file first, then all are
    renamed, so a full disk or a failed write leaves every file as it was."""
    temps: dict[Path, str] = {}
    try:
        for path, text in files.items():
            path = Path(path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
                temps[path] = tmp
                with os.fdopen(fd, "w") as fh:
                    fh.write(text)
            except OSError as e:
                raise _write_error(path, e) from e
        for path, tmp in temps.items():
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise _write_error(path, e) from e
    finally:
        for tmp in temps.values():
            if os.path.exists(tmp):
                os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and rename."""
    atomic_write_texts({Path(path): text})
