"""Build TFLite-Micro for a Cortex-M core with arm-none-eabi-gcc, from a user's TFLM tree.

TFLM's sources are on no package registry, so the user supplies a tree: a git
checkout of tensorflow/tflite-micro with its third-party headers downloaded, or a
tree exported by TFLM's ``create_tflm_tree.py``. The flatbuffers, gemmlowp and ruy
headers are looked for under ``third_party/`` (exported trees) or
``tensorflow/lite/micro/tools/make/downloads/`` (checkouts after ``make
third_party_downloads``). Reference kernels only (no CMSIS-NN), TFLM's own flags
(-Os core, -O2 kernels), cached by a hash of the tree, flags and compiler.

Example::

    lib = build_library(find_tree(Path("/src/tflite-micro")), Toolchain.find())
    # lib.archive: .../libtflm.a; lib.includes: the -I folders the harness needs
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import DeviceError, UsageError
from .ops import DECODE_SOURCES

# (core, fpu) of a device profile -> the arm-none-eabi-gcc CPU flags (each picks a newlib multilib).
CORE_FLAGS: dict[tuple[str, str], tuple[str, ...]] = {
    ("cortex-m0plus", "none"): ("-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"),
    ("cortex-m3", "none"): ("-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft"),
    ("cortex-m4", "none"): ("-mcpu=cortex-m4+nofp", "-mthumb", "-mfloat-abi=soft"),
    ("cortex-m4", "sp"): ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"),
    ("cortex-m7", "none"): ("-mcpu=cortex-m7+nofp", "-mthumb", "-mfloat-abi=soft"),
    ("cortex-m7", "sp"): ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"),
    ("cortex-m7", "dp"): ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"),
    ("cortex-m33", "none"): ("-mcpu=cortex-m33+nofp", "-mthumb", "-mfloat-abi=soft"),
    ("cortex-m33", "sp"): ("-mcpu=cortex-m33", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"),
    ("cortex-m55", "sp"): ("-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"),
    ("cortex-m55", "dp"): ("-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"),
    ("cortex-m55", "none"): ("-mcpu=cortex-m55+nofp+nomve", "-mthumb", "-mfloat-abi=soft"),
}
CPU_FLAGS = CORE_FLAGS[("cortex-m4", "sp")]  # QEMU mps2-an386's Cortex-M4F


def cpu_flags(core: str, fpu: str = "none") -> tuple[str, ...]:
    """The compiler CPU flags for a device profile's ``core`` and ``fpu``.

    Example: ``cpu_flags("cortex-m7", "dp")`` -> ``("-mcpu=cortex-m7", ..., "-mfpu=fpv5-d16")``.
    """
    flags = CORE_FLAGS.get((core, fpu))
    if flags is None:
        known = sorted({c for c, _ in CORE_FLAGS})
        raise DeviceError(f"no arm-none-eabi-gcc build for core {core} with fpu {fpu}; edgepack builds TFLM for "
                          f"{', '.join(known)} (other cores: build the harness with the vendor SDK and flash it)")
    return flags


def core_name(cpu: tuple[str, ...]) -> str:
    """'cortex-m4' from a CPU flag tuple (for messages)."""
    return next((f.split("=", 1)[1].split("+")[0] for f in cpu if f.startswith("-mcpu=")), "Cortex-M")
COMMON_FLAGS = ("-fno-unwind-tables", "-fno-asynchronous-unwind-tables", "-ffunction-sections",
                "-fdata-sections", "-fmessage-length=0", "-DTF_LITE_STATIC_MEMORY",
                "-DTF_LITE_DISABLE_X86_NEON", "-DNDEBUG", "-DTF_LITE_STRIP_ERROR_STRINGS")
CXX_FLAGS = ("-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics")
_HEADERS = {"flatbuffers": "flatbuffers/include/flatbuffers/flatbuffers.h",
            "gemmlowp": "gemmlowp/fixedpoint/fixedpoint.h",
            "ruy": "ruy/ruy/profiler/instrumentation.h"}
TREE_HELP = ("pass --tflm-root DIR: a tensorflow/tflite-micro checkout after `make -f "
             "tensorflow/lite/micro/tools/make/Makefile third_party_downloads`, or a tree exported with "
             "`python3 tensorflow/lite/micro/tools/project_generation/create_tflm_tree.py DIR`")


@dataclass(frozen=True)
class Toolchain:
    """The arm-none-eabi compilers and binutils, and qemu-system-arm."""

    gcc: str
    gxx: str
    ar: str
    size: str
    qemu: Optional[str]

    @classmethod
    def find(cls, need_qemu: bool = True) -> "Toolchain":
        """Locate the tools on PATH; DeviceError naming the Debian packages when missing."""
        names = {"gcc": "arm-none-eabi-gcc", "gxx": "arm-none-eabi-g++", "ar": "arm-none-eabi-ar",
                 "size": "arm-none-eabi-size"}
        found = {k: shutil.which(v) for k, v in names.items()}
        missing = [names[k] for k, v in found.items() if not v]
        qemu = shutil.which("qemu-system-arm")
        if need_qemu and not qemu:
            missing.append("qemu-system-arm")
        if missing:
            raise DeviceError(f"{', '.join(missing)} not found: install them with `apt-get install "
                              "--no-install-recommends gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib "
                              "qemu-system-arm`")
        return cls(qemu=qemu, **found)

    def version(self) -> str:
        out = subprocess.run([self.gcc, "-dumpfullversion"], capture_output=True, text=True)
        return out.stdout.strip()


@dataclass(frozen=True)
class Tree:
    """A TFLM source tree, the include folders it needs, and CMSIS-NN if the tree has it."""

    root: Path
    includes: tuple[Path, ...]
    cmsis_nn: Optional[Path] = None


def find_tree(root: Optional[Path]) -> Tree:
    """Check ``root`` is a usable TFLM tree; DeviceError saying exactly what to pass otherwise."""
    if root is None or str(root) == "":
        raise DeviceError(f"QEMU profiling builds TFLM from source and needs a TFLM tree: {TREE_HELP}")
    root = Path(root).expanduser().resolve()
    if not (root / "tensorflow/lite/micro/micro_interpreter.h").is_file():
        raise DeviceError(f"--tflm-root {root} holds no tensorflow/lite/micro/micro_interpreter.h; {TREE_HELP}")
    includes = [root]
    bases = (root / "third_party", root / "tensorflow/lite/micro/tools/make/downloads")
    for name, header in _HEADERS.items():
        for base in bases:
            if (base / header).is_file():
                includes.append(base / header.split("/")[0] / ("include" if name == "flatbuffers" else ""))
                break
        else:
            raise DeviceError(f"--tflm-root {root}: the {name} headers ({header}) are missing under "
                              f"third_party/ or tensorflow/lite/micro/tools/make/downloads/; {TREE_HELP}")
    cmsis = next((b / "cmsis_nn" for b in bases if (b / "cmsis_nn/Include/arm_nnfunctions.h").is_file()), None)
    return Tree(root, tuple(p.resolve() for p in includes), cmsis.resolve() if cmsis else None)


KERNEL_SETS = ("reference", "cmsis_nn")
CMSIS_DEFINES = ("-DCMSIS_NN", "-DARM_NN_ENABLE_F16=0", "-DARM_NN_ENABLE_F32=0")


def library_sources(tree: Tree, kernels: str = "reference") -> list[tuple[Path, tuple[str, ...]]]:
    """(source, extra flags) of the TFLM library, as TFLM's Makefile picks them (no tests).

    ``kernels="cmsis_nn"`` swaps in tensorflow/lite/micro/kernels/cmsis_nn/*.cc and the
    CMSIS-NN sources (like ``OPTIMIZED_KERNEL_DIR=cmsis_nn``); other kernels stay reference.
    """
    if kernels not in KERNEL_SETS:
        raise UsageError(f"unknown kernel set '{kernels}'; use one of {', '.join(KERNEL_SETS)}")
    root = tree.root
    micro = root / "tensorflow/lite/micro"
    srcs = []
    for sub in ("", "arena_allocator", "memory_planner", "tflite_bridge", "kernels"):
        srcs += sorted((micro / sub).glob("*.cc"))
    for path in sorted((root / "tensorflow").rglob("*.c*")):
        rel = path.relative_to(root).as_posix()
        if path.suffix in (".cc", ".c") and not rel.startswith(("tensorflow/lite/micro/",
                                                                "tensorflow/lite/experimental/")):
            srcs.append(path)
    generic_log = micro / "cortex_m_generic/debug_log.cc"  # logs through a callback, not stdio
    srcs = [generic_log if p == micro / "debug_log.cc" and generic_log.is_file() else p for p in srcs]
    skip = ("_test.cc", "test_helpers.cc", "test_helper_custom_ops.cc", "fake_micro_context.cc",
            "mock_micro_graph.cc", "tensorflow/lite/array.cc")
    srcs = [p for p in srcs if not p.as_posix().endswith(skip) and "/testdata/" not in p.as_posix()]
    out = [(p, ()) for p in srcs]
    if kernels == "cmsis_nn":
        if tree.cmsis_nn is None:
            raise DeviceError(f"--tflm-root {root} has no CMSIS-NN (third_party/cmsis_nn/Include/arm_nnfunctions.h); "
                              "run TFLM's `make ... OPTIMIZED_KERNEL_DIR=cmsis_nn third_party_downloads` or use "
                              "the reference kernels")
        flags = CMSIS_DEFINES + (f"-I{tree.cmsis_nn}", f"-I{tree.cmsis_nn / 'Include'}")
        special = {p.name: p for p in (micro / "kernels/cmsis_nn").glob("*.cc")}
        out = [((special[p.name], flags) if p.parent == micro / "kernels" and p.name in special else (p, f))
               for p, f in out]
        out += [(c, flags) for c in sorted((tree.cmsis_nn / "Source").rglob("*.c"))
                if not c.name.endswith(("_f16.c", "_f32.c", "arm_nntables_flt.c"))]
    return out


@dataclass(frozen=True)
class Library:
    archive: Path
    includes: tuple[Path, ...]
    flags: tuple[str, ...]
    defines: tuple[str, ...] = ()  # for the harness: the kernel set's declarations

    @property
    def cpu(self) -> tuple[str, ...]:
        """The CPU flags the library was built with (the harness must use the same)."""
        return tuple(f for f in self.flags if f not in COMMON_FLAGS)


def _cache_root() -> Path:
    base = os.environ.get("EDGEPACK_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME")
                                                           or os.path.expanduser("~/.cache"), "edgepack")
    return Path(base) / "tflm"


def _decode_source(src: Path) -> bool:
    """TFLM's DECODE kernel (kernels/decode*.cc): compiled -Os like edgepack's layouts compile it."""
    return src.name in DECODE_SOURCES and src.parent.name == "kernels"


def object_key(src: Path, extra: tuple[str, ...], includes, compiler: str, cpu: tuple[str, ...] = CPU_FLAGS) -> str:
    """Cache key of one object: source identity, every flag, include folders, compiler."""
    st = src.stat()
    h = hashlib.sha256()
    h.update("\0".join((str(src), str(st.st_size), str(st.st_mtime_ns), compiler, *cpu, *COMMON_FLAGS,
                        *CXX_FLAGS, *extra, *map(str, includes))).encode())
    if _decode_source(src):  # compiled -Os since the DECODE kernel was added (other keys unchanged: cache kept)
        h.update(b"\0-Os")
    return h.hexdigest()[:20]


def compile_one(tc: Toolchain, src: Path, obj: Path, includes, extra=(), cpu: tuple[str, ...] = CPU_FLAGS) -> None:
    """Compile one C/C++ file for the core ``cpu`` names (DeviceError with the compiler's first error)."""
    cxx = src.suffix in (".cc", ".cpp")
    opt = "-O2" if ("/kernels/" in src.as_posix() or "/cmsis_nn/" in src.as_posix()) else "-Os"
    if _decode_source(src):  # the weight decoder: -Os, about 1/3 of its -O2 text
        opt = "-Os"
    cmd = [tc.gxx if cxx else tc.gcc, *cpu, *COMMON_FLAGS, *(CXX_FLAGS if cxx else ("-std=c11",)),
           opt, *extra, *(f"-I{i}" for i in includes), "-c", str(src), "-o", str(obj)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        err = next((ln for ln in out.stderr.splitlines() if "error" in ln), out.stderr.strip()[:300])
        raise DeviceError(f"compiling {src} for {core_name(cpu)} failed: {err}; check the TFLM tree "
                          "matches its third-party headers")


def build_library(tree: Tree, tc: Toolchain, kernels: str = "reference", jobs: Optional[int] = None,
                  cpu: tuple[str, ...] = CPU_FLAGS) -> Library:
    """Compile TFLM for the core ``cpu`` names (default Cortex-M4F) into a cached ``libtflm.a``;
    objects are cached one by one, so a changed file, another core or kernel set, or an
    interrupted build recompiles only what it must."""
    srcs = library_sources(tree, kernels)
    version = tc.version()
    objdir = _cache_root() / "objects"
    objdir.mkdir(parents=True, exist_ok=True)
    objs = [objdir / f"{object_key(src, extra, tree.includes, version, cpu)}_{src.stem}.o" for src, extra in srcs]
    h = hashlib.sha256("\n".join(o.name for o in objs).encode()).hexdigest()[:16]
    archive = _cache_root() / "lib" / f"libtflm-{kernels}-{h}.a"
    lib = Library(archive, tree.includes, cpu + COMMON_FLAGS,
                  CMSIS_DEFINES if kernels == "cmsis_nn" else ())
    if archive.is_file():
        return lib

    def one(item) -> None:
        (src, extra), obj = item
        if not obj.is_file():
            part = obj.with_suffix(f".part{os.getpid()}")
            compile_one(tc, src, part, tree.includes, extra, cpu)
            part.rename(obj)

    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 2) as pool:
        list(pool.map(one, zip(srcs, objs)))
    archive.parent.mkdir(parents=True, exist_ok=True)
    part = archive.with_suffix(f".part{os.getpid()}")
    res = subprocess.run([tc.ar, "rcs", str(part), *map(str, objs)], capture_output=True, text=True)
    if res.returncode != 0:
        raise DeviceError(f"{tc.ar} failed: {res.stderr.strip()[:200]}")
    part.rename(archive)
    return lib


def link_firmware(tc: Toolchain, lib: Library, fw: Path, sources: list[Path], linker: Path, work: Path,
                  board: str) -> Path:
    """Compile the harness ``sources`` + the package's model array against ``lib`` (same CPU flags)
    and link ``harness.elf`` with ``linker``; DeviceError naming what is missing or the first error."""
    missing = [p.name for p in (*sources, linker) if not p.is_file()]
    if missing or not (fw / "model_data.cc").is_file():
        raise DeviceError(f"{fw} is not a complete firmware package (missing {', '.join(missing) or 'model_data.cc'}); "
                          "regenerate it with `edgepack package --target tflm`")
    includes = (fw, fw / "harness", *lib.includes)
    support = work / "ep_link_support.c"  # the shim's startup replaces crt0/crtbegin (-nostartfiles)
    support.write_text("/* C++ statics register destructors against this handle; weak: a board shim may\n"
                       " * define it. */\n__attribute__((weak)) void* __dso_handle = 0;\n")
    objs = []
    for src in [fw / "model_data.cc", *sources, support]:
        obj = work / (src.name + ".o")
        compile_one(tc, src, obj, includes, lib.defines, lib.cpu)
        objs.append(str(obj))
    elf = work / "harness.elf"
    cmd = [tc.gxx, *lib.cpu, "-T", str(linker), "-Wl,--gc-sections", "-nostartfiles",
           "--specs=nano.specs", "--specs=nosys.specs", *objs, str(lib.archive), "-lm", "-o", str(elf)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        err = next((ln for ln in out.stderr.splitlines() if "error" in ln or "undefined" in ln or "overflow" in ln),
                   out.stderr[:300])
        raise DeviceError(f"linking the harness for {board} failed: {err.strip()}; check the TFLM tree version"
                          + (" and the board's memory map (the image does not fit)" if "overflow" in err else ""))
    return elf


def elf_sizes(tc: Toolchain, elf: Path) -> dict[str, int]:
    """text/data/bss of an ELF (Berkeley format); flash = text + data, RAM = data + bss."""
    out = subprocess.run([tc.size, "-B", str(elf)], capture_output=True, text=True, check=False)
    try:
        text, data, bss = (int(v) for v in out.stdout.splitlines()[1].split()[:3])
    except (IndexError, ValueError):
        raise DeviceError(f"{tc.size} could not read {elf}: {out.stderr.strip()[:200]}") from None
    return {"text": text, "data": data, "bss": bss, "flash": text + data, "ram": data + bss}
