"""Profile a model on an emulated Cortex-M4 (QEMU mps2-an386) with deterministic counts.

With a user-supplied TFLM tree (``tflm_root``, or the ``EDGEPACK_TFLM_ROOT``
environment variable) edgepack compiles TFLM's reference kernels and the firmware
package's profiling harness for Cortex-M4 with arm-none-eabi-gcc, links it for
mps2-an386, runs it in ``qemu-system-arm -M mps2-an386 -icount shift=0`` and talks
harness protocol v1 over QEMU's TCP serial port. With ``-icount shift=0`` every
guest instruction advances virtual time by exactly 1 ns, so the harness's
SysTick-derived cycle counts convert to a deterministic instruction count per
inference. Flash and RAM come from the ELF (arm-none-eabi-size), the arena from
the harness (the 32-bit figure, smaller than the 64-bit host's).

Latency is reported as instructions / clock (1 cycle per instruction, labelled
"estimated"): at the device profile's clock when one is given, else at
mps2-an386's 25 MHz.

Example::

    with open_device("qemu:mps2-an386", tflm_root="/src/tflite-micro") as dev:
        r = dev.profile(Path("out/firmware"), Settings(runs=3, warmup=1))
    r.latency.instructions, r.memory.flash_bytes
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

from ...errors import DeviceError, UsageError
from ..artifact import ResolvedArtifact, firmware_report
from ..lifecycle import ARENA, ENERGY_ESTIMATE, FLASH_RAM, INSTRUCTIONS, LATENCY, OUTPUT_CHECKSUM, Device
from ..result import Latency, ProfileResult, Settings
from ...profiles import profile_power
from .serial import LineReader, build_result, estimated_energy, handshake, read_session
from ...tflm.build import KERNEL_SETS, Library, Toolchain, build_library, elf_sizes, find_tree, link_firmware

MACHINES = ("mps2-an386",)
MPS2_CLOCK_HZ = 25_000_000
DEFAULT_PROFILE = "nucleo-l4r5zi"  # a Cortex-M4 board: used to generate firmware from a bare .tflite
HARNESS_SOURCES = ("main.cc", "ep_harness.cc", "ep_protocol.c", "board_mps2.c")
LINKER_SCRIPT = "mps2_an386.ld"


def _firmware_dir(art: ResolvedArtifact, work: Path, profile: Optional[str]) -> Path:
    """A folder with model_data.cc, model_*.h and harness/: the package itself, or one
    generated from a bare .tflite with the firmware target."""
    if art.kind == "firmware" and (art.path / "model_data.cc").is_file() and (art.path / "harness").is_dir():
        return art.path
    from ...convert.flatbuffer import read_tflite
    from ...build import Build
    from ...targets.firmware import FirmwareTarget
    from ...recipe import Recipe

    build = Build(tflite=art.model, info=read_tflite(art.model, str(art.path)), recipe=Recipe(),
                  model_name=art.name, options={"device": profile or DEFAULT_PROFILE})
    out = work / "firmware"
    out.mkdir()
    FirmwareTarget().write(build, out)
    return out


def link_harness(tc: Toolchain, lib: Library, fw: Path, work: Path) -> Path:
    """Compile the harness + model array against TFLM and link ``harness.elf`` for mps2-an386."""
    harness = fw / "harness"
    return link_firmware(tc, lib, fw, [harness / n for n in HARNESS_SOURCES], harness / LINKER_SCRIPT, work,
                         "mps2-an386")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QemuDevice(Device):
    """An emulated Cortex-M4 board (QEMU ``mps2-an386``) running the profiling harness.

    Options: ``tflm_root`` (TFLM source tree; default: $EDGEPACK_TFLM_ROOT),
    ``profile`` (device profile for clock and power: latency and energy estimates;
    also the profile used to generate firmware from a bare .tflite), ``timeout``
    (seconds per protocol line), ``check_output`` (compare the output CRC with the
    TFLM host interpreter), ``kernels`` ("reference", or "cmsis_nn" when the tree
    has CMSIS-NN under third_party/cmsis_nn).

    Lifecycle: connect (find the toolchain and TFLM tree, build/cached libtflm.a) ->
    prepare (compile and link the harness with the model) -> run (boot QEMU, run the
    protocol, kill QEMU) -> cleanup (delete the build folder).
    """

    kind = "qemu"
    capabilities = frozenset({LATENCY, INSTRUCTIONS, ARENA, FLASH_RAM, OUTPUT_CHECKSUM, ENERGY_ESTIMATE})
    option_names = frozenset({"tflm_root", "profile", "timeout", "check_output", "kernels"})

    def __init__(self, target: str, tflm_root: Optional[str] = None, profile: Optional[str] = None,
                 timeout: float = 120.0, check_output: bool = True, kernels: str = "reference"):
        super().__init__(target)
        if target not in MACHINES:
            raise UsageError(f"qemu:{target} is not supported; use qemu:{' or qemu:'.join(MACHINES)}")
        self.port = f"qemu:{target}"
        self.tflm_root = tflm_root or os.environ.get("EDGEPACK_TFLM_ROOT")
        self.profile_arg = profile
        self.timeout = float(timeout)
        self.check_output = check_output
        if kernels not in KERNEL_SETS:
            raise UsageError(f"--kernels {kernels}: use one of {', '.join(KERNEL_SETS)}")
        self.kernels = kernels
        self._clock, self._active_mw, self._pname = profile_power(profile)
        self._tc: Optional[Toolchain] = None
        self._lib: Optional[Library] = None
        self._work: Optional[Path] = None
        self._elf: Optional[Path] = None
        self._art: Optional[ResolvedArtifact] = None

    def connect(self) -> None:
        """Find the TFLM tree and the toolchain; build (or reuse the cached) TFLM library."""
        tree = find_tree(Path(self.tflm_root) if self.tflm_root else None)
        self._tc = Toolchain.find(need_qemu=True)
        self._lib = build_library(tree, self._tc, self.kernels)

    def prepare(self, artifact: ResolvedArtifact) -> None:
        """Build ``harness.elf`` for the artifact in a temporary folder."""
        self._work = Path(tempfile.mkdtemp(prefix="edgepack-qemu-"))
        if self.profile_arg is None:  # a firmware folder names the profile it was packaged for
            fw = firmware_report(artifact.path)
            packaged = fw.device if fw is not None else None
            if packaged:
                self.profile_arg = str(packaged)
                self._clock, self._active_mw, self._pname = profile_power(self.profile_arg)
        fw = _firmware_dir(artifact, self._work, self.profile_arg)
        self._elf = link_harness(self._tc, self._lib, fw, self._work)
        self._art = artifact

    def _start_qemu(self, port: int) -> subprocess.Popen:
        cmd = [self._tc.qemu, "-M", self.target, "-icount", "shift=0", "-nographic", "-monitor", "none",
               "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on", "-kernel", str(self._elf)]
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)

    def _session(self, settings: Settings):
        import serial

        port = _free_port()
        proc = self._start_qemu(port)
        try:
            link = None
            deadline = time.monotonic() + 10
            while link is None:
                try:
                    link = serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=0.05)
                except serial.SerialException as e:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        err = proc.stderr.read().decode(errors="replace").strip() if proc.poll() is not None else e
                        raise DeviceError(f"qemu-system-arm did not start ({err}); check the QEMU install") from None
                    time.sleep(0.05)
            try:
                reader = LineReader(link, self.port)
                hello = handshake(reader, timeout_s=20)
                return hello, read_session(reader, settings.runs, settings.warmup, self.timeout)
            finally:
                link.close()
        finally:
            proc.kill()
            proc.wait()

    def run(self, settings: Settings) -> ProfileResult:
        """Boot the harness in QEMU, run the protocol, and report counts and sizes."""
        if self._elf is None:
            raise DeviceError("qemu device: prepare(artifact) must come before run()")
        hello, session = self._session(settings)
        r = build_result(self, self._art, hello, session, settings, kind="qemu",
                         notes=[])
        ns_per_tick = 1e9 / hello.int("clock_hz")
        instr = [c * ns_per_tick for c in session["cycles"]]
        clock = self._clock or MPS2_CLOCK_HZ
        r.notes.insert(0, f"QEMU -icount shift=0: 1 instruction = 1 ns of virtual time, counted by SysTick "
                          f"(resolution {ns_per_tick:g} instructions); latency = instructions / {clock / 1e6:g} MHz "
                          "assuming 1 cycle per instruction (estimated)")
        lat = Latency.from_samples_us([i * 1e6 / clock for i in instr], source="estimated")
        lat.instructions = int(round(sorted(instr)[len(instr) // 2]))
        sizes = elf_sizes(self._tc, self._elf)
        r.latency = lat
        r.memory.flash_bytes, r.memory.ram_bytes = sizes["flash"], sizes["ram"]
        r.energy = estimated_energy(lat.median_us, self._active_mw, self._pname)
        r.device.details.update({"machine": self.target, "kernels": self.kernels, "latency_clock_hz": str(clock),
                                 "elf_text": str(sizes["text"]), "elf_data": str(sizes["data"]),
                                 "elf_bss": str(sizes["bss"])})
        r.tool_versions["arm-none-eabi-gcc"] = self._tc.version()
        return r

    def cleanup(self) -> None:
        """Delete the build folder."""
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
        self._work = self._elf = None
