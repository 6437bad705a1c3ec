"""Android ABIs: which ``benchmark_model`` binary a device can run, read from the ELF header.

The user gives one binary, one per ABI (``arm64-v8a=./bm64``, ``armeabi-v7a=./bm32``), or a
folder with ABI subfolders (``bin/arm64-v8a/benchmark_model``). The device's
``ro.product.cpu.abilist`` (most preferred first; ``ro.product.cpu.abi`` on old devices)
picks the binary, and the binary's ELF class and ``e_machine`` must fit that ABI: a
wrong binary is refused before anything is pushed. Shell scripts (``#!``) run anywhere.

Example::

    binaries = parse_binaries(["arm64-v8a=./bm64", "armeabi-v7a=./bm32"])
    path = pick_binary(binaries, ["arm64-v8a", "armeabi-v7a"], where="adb:R58M")
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Iterable, Optional, Union

from ...errors import DeviceError, UsageError

# ABI -> (ELF class: 1 = 32-bit, 2 = 64-bit; e_machine)
ABIS: dict[str, tuple[int, int]] = {
    "arm64-v8a": (2, 183),  # EM_AARCH64
    "armeabi-v7a": (1, 40),  # EM_ARM
    "armeabi": (1, 40),
    "x86_64": (2, 62),  # EM_X86_64
    "x86": (1, 3),  # EM_386
    "riscv64": (2, 243),  # EM_RISCV
}
MACHINES = {3: "x86", 40: "ARM", 62: "x86-64", 183: "AArch64", 243: "RISC-V"}
ANY = ""  # key of a binary given without an ABI
GET_BENCHMARK = ("pass --benchmark-binary PATH (or ABI=PATH per ABI): download TFLite's prebuilt "
                 "benchmark_model for the device ABI (android_aarch64_benchmark_model, see "
                 "https://www.tensorflow.org/lite/performance/measurement) or build it with "
                 "`bazel build -c opt --config=android_arm64 //tensorflow/lite/tools/benchmark:benchmark_model`")
BinarySpec = Union[None, str, Path, Iterable[Union[str, Path]]]


def parse_binaries(spec: BinarySpec) -> dict[str, Path]:
    """{abi: path} from PATH, ABI=PATH items, or a folder of ABI subfolders ({} when none).

    Example::

        parse_binaries("bin/")  # {"arm64-v8a": bin/arm64-v8a/benchmark_model, ...}
    """
    if spec is None:
        return {}
    items = [spec] if isinstance(spec, (str, Path)) else list(spec)
    out: dict[str, Path] = {}
    for item in items:
        text = str(item)
        abi, sep, path = text.partition("=")
        if sep and abi in ABIS:
            pairs = [(abi, Path(path))]
        elif sep and "/" not in abi and not Path(text).exists():
            raise UsageError(f"--benchmark-binary {text}: unknown ABI '{abi}'; use one of "
                             f"{', '.join(ABIS)} (e.g. arm64-v8a=./benchmark_model)")
        elif Path(text).is_dir():
            pairs = _folder(Path(text))
        else:
            pairs = [(ANY, Path(text))]
        for abi, path in pairs:
            if abi in out:
                raise UsageError(f"--benchmark-binary: two binaries for "
                                 f"{abi or 'any ABI'} ({out[abi]} and {path}); give one per ABI")
            out[abi] = path
    return out


def _folder(folder: Path) -> list[tuple[str, Path]]:
    pairs = []
    for abi in ABIS:
        sub = folder / abi
        if not sub.is_dir():
            continue
        files = [p for p in sorted(sub.iterdir()) if p.is_file()]
        named = [p for p in files if p.name.startswith("benchmark_model")]
        pick = named if len(named) == 1 else files
        if len(pick) != 1:
            raise UsageError(f"--benchmark-binary {folder}: {sub} should hold one benchmark_model "
                             f"binary, found {len(files)} files")
        pairs.append((abi, pick[0]))
    if not pairs:
        raise UsageError(f"--benchmark-binary {folder}: a folder needs ABI subfolders "
                         f"({', '.join(ABIS)}), each with a benchmark_model")
    return pairs


def check_files(binaries: dict[str, Path]) -> None:
    """Each binary exists and is an ELF executable or a script (before any device is touched)."""
    for abi, path in binaries.items():
        if not path.is_file():
            raise DeviceError(f"benchmark binary {path} does not exist; {GET_BENCHMARK}")
        kind = elf_kind(path)
        if abi and kind is not None and kind not in _fits(abi):
            raise UsageError(f"--benchmark-binary {abi}={path} is a {_describe(kind)} binary, "
                             f"not {abi}; give the {abi} build")


def elf_kind(path: Path) -> Optional[tuple[int, int]]:
    """(ELF class, e_machine) of an ELF file; None for a ``#!`` script; DeviceError otherwise."""
    with open(path, "rb") as f:
        head = f.read(20)
    if head[:2] == b"#!":
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF" or head[4] not in (1, 2) or head[5] not in (1, 2):
        raise DeviceError(f"benchmark binary {path} is not an ELF executable (nor a #! script); "
                          f"{GET_BENCHMARK}")
    endian = "<" if head[5] == 1 else ">"
    return head[4], struct.unpack(endian + "H", head[18:20])[0]


def _describe(kind: tuple[int, int]) -> str:
    cls, machine = kind
    return f"{32 if cls == 1 else 64}-bit {MACHINES.get(machine, f'e_machine {machine}')}"


def _fits(abi: str) -> set[tuple[int, int]]:
    return {ABIS[abi]} if abi in ABIS else set()


def pick_binary(binaries: dict[str, Path], abilist: list[str], where: str) -> Path:
    """The binary for a device whose ABIs are ``abilist`` (preferred first), checked by its ELF header.

    Example::

        pick_binary({"arm64-v8a": Path("bm64")}, ["arm64-v8a", "armeabi-v7a"], "adb:R58M")
    """
    if not binaries:
        raise DeviceError(f"{where}: no benchmark_model binary; {GET_BENCHMARK}")
    abis = [a for a in abilist if a]
    shown = ", ".join(abis) or "unknown"
    path = next((binaries[a] for a in abis if a in binaries), binaries.get(ANY))
    if path is None:
        given = ", ".join(a for a in binaries if a)
        raise DeviceError(f"{where} runs {shown}, and --benchmark-binary gives {given} only; "
                          f"add {abis[0] if abis else 'its ABI'}=PATH")
    kind = elf_kind(path)
    if kind is None or not abis:
        return path
    if not any(kind in _fits(a) for a in abis):
        raise DeviceError(f"benchmark binary {path} is a {_describe(kind)} ELF, but {where} runs {shown}; "
                          f"pass the {abis[0]} build (e.g. --benchmark-binary {abis[0]}=PATH)")
    return path
