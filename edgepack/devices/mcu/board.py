"""Build, flash and profile a real board in one step: ``--device board:PROFILE``.

The device profile names the core, FPU, memory map and (``flash:`` block) the flashing
tool. edgepack compiles TFLM and the firmware package's profiling harness for that core
(arm-none-eabi-gcc, the user's TFLM tree), links it for the board's flash and RAM with
its board-support source, checks the ELF's flash/RAM against the board, flashes it with
the tool (pyOCD, OpenOCD, esptool, picotool/UF2, arduino-cli or any GDB server), then
runs harness protocol v1 over the board's serial port (handshake, checksums, output CRC
against the host TFLM interpreter) exactly like ``serial:``. A flash that fails is a
FlashError: the board is never reported as profiled.

Example::

    with open_device("board:nucleo-l4r5zi", port="/dev/ttyACM0", tflm_root="/src/tflite-micro") as dev:
        r = dev.profile(Path("build/firmware"), Settings(runs=10, warmup=1))
    r.latency.median_us, r.memory.flash_bytes, r.device.details["probe"]
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from string import Template
from typing import Optional

from ...errors import DeviceError, UsageError
from ...fsutil import sha256_bytes
from ...paths import data_dir
from ...tflm import protocol as hp
from ..artifact import ResolvedArtifact
from ..lifecycle import ARENA, CYCLES, ENERGY_ESTIMATE, FLASH_RAM, LATENCY, OUTPUT_CHECKSUM, Device
from .flash import TOOLS, FlashReport, FlashRequest, flash_tool
from ..result import ProfileResult, Settings
from ...profiles import profile_power
from .serial import DEFAULT_TIMEOUT_S, HANDSHAKE_TIMEOUT_S, SerialDevice, build_result
from ...tflm.build import CORE_FLAGS, KERNEL_SETS, Library, Toolchain, build_library, cpu_flags, elf_sizes, \
    find_tree, link_firmware

HARNESS_CORE = ("main.cc", "ep_harness.cc", "ep_protocol.c")
DEFAULT_GDB_SERVER = "127.0.0.1:3333"  # OpenOCD's and pyOCD gdbserver's default port
ESP_IMAGE = "harness/build/edgepack_harness.bin"  # where an ESP-IDF build of the harness is expected


def parse_probe(probe: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """``--probe TOOL[:ARG]`` -> (tool, arg): ``gdb:127.0.0.1:1234``, ``pyocd:0670FF...``, ``uf2:/media/RPI-RP2``.

    Example: ``parse_probe("gdb:localhost:3333")`` -> ``("gdb", "localhost:3333")``.
    """
    if not probe:
        return None, None
    tool, _, arg = probe.partition(":")
    if tool not in TOOLS:
        raise UsageError(f"--probe {probe}: unknown flashing tool '{tool}'; use {'|'.join(TOOLS)} "
                         "(optionally TOOL:PROBE-ID, gdb:HOST:PORT, uf2:MOUNT-FOLDER)")
    return tool, arg or None


class BoardDevice(Device):
    """A real board: build the harness for its core, flash it, profile it over serial.

    ``target`` is a device profile name or YAML path with a ``flash:`` block (or pass
    ``probe``). Options: ``probe`` ("TOOL[:ARG]", overrides the profile's tool), ``port``
    (the board's serial port, e.g. /dev/ttyACM0 or socket://HOST:PORT), ``tflm_root``
    (default $EDGEPACK_TFLM_ROOT), ``kernels``, ``timeout``/``handshake_timeout``/
    ``session_timeout``/``baud``/``check_output`` (as ``serial:``), ``flash_timeout``.

    Lifecycle: check (profile, tool installed, board support, port) -> connect (toolchain,
    TFLM tree, cached libtflm.a for the core) -> prepare (link, size check, flash) -> run
    (serial protocol) -> cleanup (delete the build folder).
    """

    kind = "board"
    capabilities = frozenset({LATENCY, CYCLES, ARENA, FLASH_RAM, OUTPUT_CHECKSUM, ENERGY_ESTIMATE})
    option_names = frozenset({"probe", "port", "tflm_root", "kernels", "timeout", "handshake_timeout",
                              "session_timeout", "baud", "check_output", "flash_timeout"})

    def __init__(self, target: str, probe: Optional[str] = None, port: Optional[str] = None,
                 tflm_root: Optional[str] = None, kernels: str = "reference", timeout: float = DEFAULT_TIMEOUT_S,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT_S, session_timeout: Optional[float] = None,
                 baud: int = hp.BAUD, check_output: bool = True, flash_timeout: float = 120.0):
        super().__init__(target)
        from ...profiles import Flash, load_profile

        self.board = load_profile(target)
        tool, arg = parse_probe(probe)
        cfg = self.board.flash
        if cfg is None and tool is None:
            raise UsageError(f"device profile {self.board.name} has no flash: block; pass --probe "
                             f"{'|'.join(TOOLS)} or add flash: {{tool: ..., target: ...}} to its YAML")
        same = cfg is not None and (tool is None or tool == cfg.tool)
        self.flash_cfg = cfg if cfg is not None else Flash(tool=tool)
        self.tool = flash_tool(tool or cfg.tool)
        self.flash_target = (arg if self.tool.name == "gdb" and arg else cfg.target if same else "")
        if self.tool.name == "gdb" and not self.flash_target:
            self.flash_target = DEFAULT_GDB_SERVER
        self.probe = None if self.tool.name == "gdb" else arg
        self.flash_options = dict(cfg.options) if same else {}
        if kernels not in KERNEL_SETS:
            raise UsageError(f"--kernels {kernels}: use one of {', '.join(KERNEL_SETS)}")
        self.kernels = kernels
        self.port = port or self.flash_cfg.port
        self.tflm_root = tflm_root or os.environ.get("EDGEPACK_TFLM_ROOT")
        self.serial_options = dict(baud=baud, timeout=timeout, handshake_timeout=handshake_timeout,
                                   session_timeout=session_timeout)
        self.check_output = check_output
        self.flash_timeout = float(flash_timeout)
        self._clock, self._active_mw, self._pname = profile_power(target)
        self._tc: Optional[Toolchain] = None
        self._lib: Optional[Library] = None
        self._work: Optional[Path] = None
        self._art: Optional[ResolvedArtifact] = None
        self._image: Optional[Path] = None
        self._sizes: Optional[dict[str, int]] = None
        self._flashed: Optional[FlashReport] = None

    # -- what the build needs ------------------------------------------------
    @property
    def own_build(self) -> bool:
        """True when edgepack compiles the harness (an Arm core and a tool that takes our ELF)."""
        return (self.board.core, self.board.fpu) in CORE_FLAGS and not getattr(self.tool, "builds_firmware", False)

    def board_support(self, fw: Optional[Path]) -> list[Path]:
        """The board-support sources: the profile's list (default board_<profile>.c), each looked
        up in the package's harness/ folder, then in edgepack's templates/tflm/."""
        names = self.flash_cfg.board_support or [f"board_{self.board.name}.c"]
        found = []
        for name in names:
            where = [*(([fw / "harness" / name]) if fw else []), data_dir("templates") / "tflm" / name]
            path = next((p for p in where if p.is_file()), None)
            if path is None:
                raise DeviceError(
                    f"no board support for {self.board.name}: write harness/{name} implementing harness/board.h "
                    "(board_init, board_putc, board_getc, board_cycles, board_clock_hz: UART 115200 8N1 and a cycle "
                    "counter) with Reset_Handler and the vector table in .isr_vector (see harness/board_mps2.c), or "
                    "name the files under flash.board_support in the profile")
            found.append(path)
        return found

    def linker_script(self, out: Path) -> Path:
        """The board's linker script, from the profile's memory map."""
        cfg = self.flash_cfg
        text = Template((data_dir("templates") / "tflm" / "cortex_m.ld.tmpl").read_text()).substitute(
            board=self.board.board, core=self.board.core, flash_origin=f"{cfg.flash_origin:#010x}",
            flash_bytes=self.board.flash_bytes, ram_origin=f"{cfg.ram_origin:#010x}",
            ram_bytes=cfg.ram_bytes or self.board.ram_bytes,
            stack_bytes=cfg.options.get("stack_bytes", "0x4000"), heap_bytes=cfg.options.get("heap_bytes", "0x1000"))
        out.write_text(text)
        return out

    # -- lifecycle -------------------------------------------------------------
    def check(self, artifact: ResolvedArtifact) -> None:
        """Before any build: the flashing tool is installed, the board has support, a port is given."""
        self.tool.find()
        if not self.port:
            raise UsageError(f"board:{self.target} needs its serial port: pass --port /dev/ttyACM0 (see "
                             "`edgepack devices`) or set flash.port in the profile")
        if self.own_build:
            self.board_support(artifact.path if artifact.kind == "firmware" and artifact.path.is_dir() else None)
        elif not getattr(self.tool, "builds_firmware", False):
            image = artifact.path / ESP_IMAGE if artifact.path.is_dir() else None
            if image is None or not image.is_file():
                raise DeviceError(f"{self.board.name} has a {self.board.core} core, which edgepack's arm-none-eabi "
                                  f"build does not target: build the harness in {artifact.path}/harness with the "
                                  f"vendor SDK (ESP-IDF: `idf.py build` then `esptool merge-bin -o {ESP_IMAGE} ...`) "
                                  "and run this again")

    def connect(self) -> None:
        """Find the toolchain and TFLM tree; build (or reuse) libtflm.a for the board's core."""
        self._tc = Toolchain.find(need_qemu=False)
        if self.own_build:
            tree = find_tree(Path(self.tflm_root) if self.tflm_root else None)
            self._lib = build_library(tree, self._tc, self.kernels,
                                      cpu=cpu_flags(self.board.core, self.board.fpu))

    def prepare(self, artifact: ResolvedArtifact) -> None:
        """Link the harness for the board, check it fits, and flash it (FlashError if that fails)."""
        from .qemu import _firmware_dir

        self._work = Path(tempfile.mkdtemp(prefix="edgepack-board-"))
        fw = _firmware_dir(artifact, self._work, str(self.target))
        if self.own_build:
            sources = [fw / "harness" / n for n in HARNESS_CORE] + self.board_support(fw)
            elf = link_firmware(self._tc, self._lib, fw, sources, self.linker_script(self._work / "board.ld"),
                                self._work, self.board.name)
        elif getattr(self.tool, "builds_firmware", False):
            elf = self.tool.build(fw, self.flash_target, self._work / "build")
        else:
            elf = fw / ESP_IMAGE
        self._sizes = self.check_fits(elf)
        self._image, self._art = elf, artifact
        self._flashed = self.tool.flash(FlashRequest(
            image=elf, target=self.flash_target, probe=self.probe, options=self.flash_options,
            vector_table=self.flash_cfg.flash_origin, timeout_s=self.flash_timeout))

    def check_fits(self, image: Path) -> dict[str, int]:
        """flash = text + data and RAM = data + bss (arm-none-eabi-size) within the board's; DeviceError otherwise."""
        if image.suffix != ".elf":
            n = image.stat().st_size
            sizes = {"text": n, "data": 0, "bss": 0, "flash": n, "ram": 0}
        else:
            sizes = elf_sizes(self._tc, image)
        ram = self.flash_cfg.ram_bytes or self.board.ram_bytes
        if sizes["flash"] > self.board.flash_bytes or sizes["ram"] > ram:
            raise DeviceError(f"the harness for {self.board.name} needs {sizes['flash']:,} B flash and "
                              f"{sizes['ram']:,} B RAM, the board has {self.board.flash_bytes:,} B and {ram:,} B: "
                              "nothing was flashed; shrink the model or the arena (edgepack package --target tflm)")
        return sizes

    def run(self, settings: Settings) -> ProfileResult:
        """Run the flashed harness over the serial port; refuses when nothing was flashed."""
        if self._flashed is None or self._art is None:
            raise DeviceError(f"board:{self.target}: the harness was not flashed; prepare(artifact) must succeed first")
        link = SerialDevice(self.port, check_output=False, **self.serial_options)
        try:
            hello, session = link.run_harness(settings)
        finally:
            link.close()
        r = build_result(self, self._art, hello, session, settings, kind="board")
        sizes, fl = self._sizes, self._flashed
        r.memory.flash_bytes, r.memory.ram_bytes = sizes["flash"], sizes["ram"]
        r.device.name = self.board.board
        probe = self.probe or (f"gdb remote {self.flash_target}" if fl.tool == "gdb" else "the one attached")
        r.device.details.update({
            "port": self.port, "core": self.board.core, "fpu": self.board.fpu, "probe": probe,
            "flash_tool": fl.tool, "flash_target": self.flash_target, "flash_command": " ".join(fl.command),
            "image_sha256": sha256_bytes(self._image.read_bytes()), "elf_text": str(sizes["text"]),
            "elf_data": str(sizes["data"]), "elf_bss": str(sizes["bss"]), "kernels": self.kernels})
        r.tool_versions[fl.tool if fl.tool != "gdb" else os.path.basename(fl.executable)] = fl.version
        if self._tc is not None:
            r.tool_versions["arm-none-eabi-gcc"] = self._tc.version()
        r.notes.insert(0, f"flashed with {fl.tool} ({fl.executable}) and verified; latency = board cycles / "
                          f"its clock_hz {hello.int('clock_hz') / 1e6:g} MHz")
        return r

    def cleanup(self) -> None:
        """Delete the build folder."""
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
        self._work = None


def list_probes() -> list[dict[str, str]]:
    """Attached debug probes (pyOCD's listing), as ``edgepack devices`` entries
    (spec, kind, description, status). Without pyOCD: one entry saying how to get it.

    Example: ``for p in list_probes(): print(p["spec"], p["description"])``.
    """
    try:
        from .flash.pyocd import list_probes as pyocd_probes

        probes = pyocd_probes()
    except ImportError:
        return [{"spec": "board:PROFILE --probe pyocd", "kind": "probe", "description": "debug probes (pyOCD)",
                 "status": "unavailable: pip install pyocd to list CMSIS-DAP/ST-Link/J-Link probes"}]
    except Exception as e:  # a USB backend error must not break `edgepack devices`
        return [{"spec": "board:PROFILE --probe pyocd", "kind": "probe", "description": "debug probes (pyOCD)",
                 "status": f"unavailable: pyOCD could not list probes ({type(e).__name__}: {e})"}]
    return [{"spec": f"board:PROFILE --probe pyocd:{p['unique_id']}", "kind": "probe",
             "description": f"{p['vendor']} {p['description']}".strip(), "status": "available"} for p in probes]
