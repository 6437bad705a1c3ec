"""Device profiles: YAML descriptions of real boards, validated on load.

A profile gives the core, clock, flash and RAM, whether only int8 runs well, power
figures and an estimate of TFLM's own flash/RAM, and (optionally) a per-op cost model
for latency estimates. Every number carries its sources under ``sources:``, keyed by
the field name (``power.active_mw`` for nested ones); a figure without a source is
a load error.

Example::

    p = load_profile("nucleo-l4r5zi")
    p.clock_hz, p.flash_bytes, p.ram_bytes, p.power.active_mw
    list_profiles()            # ['alif-ensemble-e7-hp', 'arduino-nano-33-ble-sense', ...]
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import UsageError, validation_message
from .paths import data_dir

Core = Literal["cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55",
               "cortex-m85", "xtensa-lx6", "xtensa-lx7", "riscv32"]
Fpu = Literal["none", "sp", "dp"]

# Figures that must be backed by at least one source.
_SOURCED = ("clock_hz", "flash_bytes", "ram_bytes", "runtime_flash_bytes", "runtime_ram_bytes",
            "power.active_mw", "power.idle_mw")


class Power(BaseModel):
    """Board/chip power while running inference (active) and idle, in milliwatts."""

    model_config = ConfigDict(extra="forbid")
    active_mw: float = Field(gt=0)
    idle_mw: float = Field(ge=0)


class CostModel(BaseModel):
    """The one cost-model schema: cycles = sum over ops of cycles_per_mac[op] * MACs +
    cycles_per_element[op] * output elements + cycles_per_op. Used per core
    (``device_profiles/cores/<core>.yaml``, with how it was fitted under ``calibration``) or
    inline in a device profile (``cost_model:``, which wins over the core's)."""

    model_config = ConfigDict(extra="forbid")
    core: Optional[str] = None
    stack: str = ""  # the software stack the published figures were measured with
    cycles_per_mac: dict[str, float] = Field(default_factory=dict)
    cycles_per_element: dict[str, float] = Field(default_factory=dict)
    cycles_per_op: float = Field(0.0, ge=0)
    sources: list[str] = Field(default_factory=list)
    calibration: dict = Field(default_factory=dict)  # how it was fitted, data points, leave-one-out errors

    @field_validator("cycles_per_mac", "cycles_per_element")
    @classmethod
    def _ops_and_values(cls, v: dict[str, float]) -> dict[str, float]:
        for op, x in v.items():
            if not op.replace("_", "").isalnum() or op.upper() != op:
                raise ValueError(f"op name '{op}' must be an upper-case TFLite builtin name (e.g. CONV_2D) or DEFAULT")
            if x < 0:
                raise ValueError(f"{op}: cycles must be >= 0 (got {x})")
        return v


class Flash(BaseModel):
    """How ``--device board:NAME`` flashes the board: the tool (a key of
    edgepack.devices.mcu.flash.TOOLS), the tool's name for the chip (pyOCD target type,
    OpenOCD target config, esptool chip, Arduino FQBN, GDB server HOST:PORT), tool
    options (OpenOCD interface, pyOCD pack ...), the memory map the harness is linked
    for, the board-support sources (board.h's functions + startup) and the serial port."""

    model_config = ConfigDict(extra="forbid")
    tool: Literal["pyocd", "openocd", "esptool", "picotool", "uf2", "arduino-cli", "gdb"]
    target: str = ""
    options: dict[str, str] = Field(default_factory=dict)
    flash_origin: int = Field(0x08000000, ge=0)
    ram_origin: int = Field(0x20000000, ge=0)
    ram_bytes: Optional[int] = Field(None, gt=0, description="the linked RAM region when smaller than ram_bytes")
    board_support: list[str] = Field(default_factory=list)
    port: str = ""


class DeviceProfile(BaseModel):
    """One board. Sizes in bytes, clock in Hz, power in mW."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    board: str
    mcu: str
    core: Core
    fpu: Fpu
    npu: Optional[str] = None
    clock_hz: int = Field(gt=0)
    flash_bytes: int = Field(gt=0)
    ram_bytes: int = Field(gt=0)
    int8_only: bool
    runtime_flash_bytes: int = Field(ge=0, description="TFLM runtime + kernels + harness, estimate")
    runtime_ram_bytes: int = Field(ge=0, description="stack, heap and statics besides the arena, estimate")
    power: Power
    cost_model: Optional[CostModel] = None
    flash: Optional[Flash] = None
    sources: dict[str, list[str]]
    notes: str = ""

    @model_validator(mode="after")
    def _every_figure_sourced(self) -> "DeviceProfile":
        missing = [k for k in _SOURCED if not [s for s in self.sources.get(k, []) if s.strip()]]
        if missing:
            raise ValueError(f"figures without a source: {', '.join(missing)} (add them under 'sources:')")
        unknown = sorted(set(self.sources) - set(_SOURCED))
        if unknown:
            raise ValueError(f"sources for unknown figures: {', '.join(unknown)}")
        return self

    @property
    def flash_budget_bytes(self) -> int:
        """Flash left for the model after TFLM itself."""
        return self.flash_bytes - self.runtime_flash_bytes

    @property
    def ram_budget_bytes(self) -> int:
        """RAM left for the tensor arena after stack, heap and statics."""
        return self.ram_bytes - self.runtime_ram_bytes


def profiles_dir() -> Path:
    return data_dir("device_profiles")


def list_profiles() -> list[str]:
    """Names of the shipped profiles, sorted."""
    return sorted(p.stem for p in profiles_dir().glob("*.yaml"))


def load_profile_file(path: Path) -> DeviceProfile:
    """Load and validate one profile YAML (raises UsageError naming the file and field)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise UsageError(f"{path}: cannot read device profile ({str(e).splitlines()[0]})") from None
    try:
        prof = DeviceProfile.model_validate(raw)
    except ValidationError as e:
        raise UsageError(f"{path}: {validation_message(e)}; fix the profile") from None
    if prof.name != path.stem:
        raise UsageError(f"{path}: name '{prof.name}' differs from the file name; rename one of them")
    return prof


@lru_cache(maxsize=None)
def _load_cached(path: str, mtime: float) -> DeviceProfile:
    return load_profile_file(Path(path))


def load_profile(name: str) -> DeviceProfile:
    """A shipped profile by name, or a profile YAML by path.

    Unknown names raise UsageError listing the known ones.
    """
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return load_profile_file(p)
    path = profiles_dir() / f"{name}.yaml"
    if not path.is_file():
        raise UsageError(f"unknown device profile '{name}'; known profiles: {', '.join(list_profiles())} "
                         "(or give a path to a profile .yaml)")
    return _load_cached(str(path), path.stat().st_mtime).model_copy(deep=True)


def profile_power(profile: Optional[str]) -> tuple[Optional[int], Optional[float], Optional[str]]:
    """(clock_hz, active_mw, profile name) of a device profile, or Nones without one.

    Example: ``profile_power("nucleo-l4r5zi")  # (120000000, ..., "nucleo-l4r5zi")``
    """
    if not profile:
        return None, None, None
    p = load_profile(profile)
    return int(p.clock_hz), float(p.power.active_mw), p.name
