"""Flashing tools: one module per tool, one explicit registry.

Each tool turns a :class:`~edgepack.devices.mcu.flash.base.FlashRequest` (the image, the
tool's name for the target chip, the probe, options) into a command line, runs it,
and turns the tool's failure output into one line naming the tool and the fix
(:class:`~edgepack.devices.mcu.flash.base.FlashError`).

Example::

    tool = flash_tool("pyocd")
    report = tool.flash(FlashRequest(image=Path("harness.elf"), target="stm32h743xx"))
    report.tool, report.version
"""

from __future__ import annotations

import importlib

from ....errors import UsageError
from .base import FlashError, FlashReport, FlashRequest, FlashTool

__all__ = ["TOOLS", "FlashError", "FlashReport", "FlashRequest", "FlashTool", "flash_tool"]

# --probe / a profile's flash.tool -> "module:Class". One line per tool; imported only when used.
TOOLS: dict[str, str] = {
    "pyocd": "edgepack.devices.mcu.flash.pyocd:PyOcd",
    "openocd": "edgepack.devices.mcu.flash.openocd:OpenOcd",
    "esptool": "edgepack.devices.mcu.flash.esptool:Esptool",
    "picotool": "edgepack.devices.mcu.flash.picotool:Picotool",
    "uf2": "edgepack.devices.mcu.flash.picotool:Uf2Copy",
    "arduino-cli": "edgepack.devices.mcu.flash.arduino_cli:ArduinoCli",
    "gdb": "edgepack.devices.mcu.flash.gdb:GdbRemote",
}


def flash_tool(name: str) -> FlashTool:
    """The flashing tool registered as ``name`` (UsageError listing the known ones)."""
    try:
        module, cls = TOOLS[name].split(":")
    except KeyError:
        raise UsageError(f"unknown flashing tool '{name}'; use --probe {'|'.join(TOOLS)}") from None
    return getattr(importlib.import_module(module), cls)()
