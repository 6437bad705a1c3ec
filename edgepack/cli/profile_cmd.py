"""``edgepack profile``: run a .tflite or package folder on a device and report the figures."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from .common import echo_json

UNITS = ["auto", "uA", "mA", "A"]
SIGNS = ["auto", "positive-discharge", "negative-discharge"]


def _device_options(f):
    opts = [
        click.option("--timeout", type=float, help="Seconds before a device that stops answering is an error."),
        click.option("--benchmark-binary", multiple=True, metavar="[ABI=]PATH",
                     help="adb: TFLite benchmark_model for the phone's ABI; repeat as ABI=PATH "
                          "(arm64-v8a=./bm64) or give a folder of ABI subfolders: the device's ABI picks."),
        click.option("--adb-key", type=click.Path(path_type=Path),
                     help="adb: RSA key (default ~/.config/edgepack/adbkey, or $EDGEPACK_ADB_KEY)."),
        click.option("--auth-timeout", type=float, help="adb: seconds to wait for the phone to accept the key."),
        click.option("--op-profiling", is_flag=True, default=None, help="adb: per-op time table."),
        click.option("--no-energy", "no_energy", is_flag=True, help="adb: skip battery sampling."),
        click.option("--no-xnnpack", "no_xnnpack", is_flag=True,
                     help="adb: TFLite's builtin kernels (per-op table shows every op)."),
        click.option("--idle-seconds", type=float, help="adb: idle baseline length (default 2)."),
        click.option("--energy-seconds", type=float, help="adb: least run length while sampling (default 2)."),
        click.option("--current-unit", type=click.Choice(UNITS), help="adb: battery current_now unit."),
        click.option("--current-sign", type=click.Choice(SIGNS), help="adb: sign of a discharging current."),
        click.option("--profile", "device_profile", help="serial/qemu: device profile for clock and power."),
        click.option("--tflm-root", type=click.Path(path_type=Path), help="qemu: a TensorFlow Lite Micro source tree."),
        click.option("--kernels", type=click.Choice(["reference", "cmsis_nn"]),
                     help="qemu: TFLM kernel set to build (default reference)."),
        click.option("--baud", type=int, help="serial: baud rate (default 115200)."),
        click.option("--handshake-timeout", type=float, help="serial: seconds to wait for the board's HELLO."),
        click.option("--probe", help="board: flashing tool pyocd|openocd|esptool|picotool|uf2|arduino-cli|gdb, "
                     "optionally TOOL:PROBE-ID or gdb:HOST:PORT (default: the profile's flash.tool)."),
        click.option("--port", help="board: the board's serial port (/dev/ttyACM0, socket://HOST:PORT)."),
        click.option("--no-check-output", "no_check_output", is_flag=True,
                     help="serial/qemu: do not compare the output CRC with the TFLM host interpreter."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


@click.command("profile")
@click.argument("artifact", required=False, type=click.Path(path_type=Path))
@click.option("--device", "-d", "spec", default="host", show_default=True, metavar="SPEC",
              help="The device to run on (a device spec; a device profile is --profile): host, adb (the only "
                   "phone), adb:SERIAL, adb:all, adb-tcp:HOST:PORT, serial:PORT, qemu:mps2-an386, board:PROFILE or "
                   "estimate[:PROFILE].")
@click.option("--runs", type=int, default=50, show_default=True, help="Timed runs.")
@click.option("--warmup", type=int, default=5, show_default=True, help="Untimed runs before them.")
@click.option("--threads", type=int, default=1, show_default=True, help="CPU threads (host, adb).")
@click.option("--compare", nargs=2, type=click.Path(path_type=Path), metavar="A B",
              help="Profile two artifacts on the device and print B/A ratios.")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout instead of a table.")
@click.option("--out", type=click.Path(path_type=Path), help="Also write the JSON to this file (atomically).")
@click.option("--append-report", type=click.Path(path_type=Path), metavar="DIR",
              help="Append the result(s) to DIR/report.json under 'profiles'.")
@click.option("-q", "--quiet", is_flag=True, help="No status lines on stderr.")
@_device_options
def profile(artifact, spec, runs, warmup, threads, compare, as_json, out, append_report, quiet, **device_opts):
    """Profile a .tflite or a package folder on a device: latency, memory, energy.

    Every figure says whether it was measured, estimated or is not available.
    `--device adb:all` runs the build on every phone the adb server lists and prints
    the spread (max/min) of each figure across them.

    \b
    Examples:
      edgepack profile build/android/model.tflite --device host --runs 100
      edgepack profile build/android --device adb:R58M123ABC \\
        --benchmark-binary ./android_aarch64_benchmark_model
      edgepack profile build/android --device adb:all \\
        --benchmark-binary arm64-v8a=./bm64 --benchmark-binary armeabi-v7a=./bm32
      edgepack profile --compare float.tflite int8.tflite --device host
      edgepack profile build/firmware --device board:nucleo-l4r5zi --port /dev/ttyACM0 \\
        --tflm-root ~/src/tflite-micro
    """
    from ..devices.registry import expand_spec, parse_spec
    from ..devices.result import Settings
    from ..errors import UsageError

    if bool(artifact) == bool(compare):
        raise UsageError("give one ARTIFACT, or two with --compare A B (not both)")
    from ..devices.store import check_out, read_report
    from ..fsutil import check_file_spares_inputs

    paths = list(compare) if compare else [artifact]
    if out:
        check_out(out)
        check_file_spares_inputs(out, paths)
    if append_report:
        read_report(append_report)
        for name in ("report.json", "report.md", "report.html"):
            check_file_spares_inputs(Path(append_report) / name, paths, "--append-report", folder_files=False)
    options = _options(device_opts)
    settings = Settings(runs=runs, warmup=warmup, threads=threads)
    many = parse_spec(spec).target == "all"
    if many and compare:
        raise UsageError(f"--device {spec} with --compare: compare two builds on one device, or give "
                         "one ARTIFACT to profile on every device")
    if many:
        _profile_many(artifact, expand_spec(spec), options, settings, quiet, as_json, out, append_report)
        return
    with _open(spec, options) as dev:
        results = []
        for p in paths:
            if not quiet:
                click.echo(f"profiling {p} on {spec} ...", err=True)
            results.append(dev.profile(p, settings))
    _emit(results, bool(compare), as_json, out, append_report)


# Device options (open_device keywords) set by a click parameter of another name; the rest share their name.
# A `no_*` parameter is a flag that sets its option to False.
_OPTION_PARAM = {"profile": "device_profile", "energy": "no_energy", "check_output": "no_check_output",
                 "xnnpack": "no_xnnpack"}


def _options(opts: dict) -> dict:
    opts = dict(opts)
    opts["benchmark_binary"] = list(opts["benchmark_binary"]) or None
    for option, param in _OPTION_PARAM.items():
        value = opts.pop(param)
        opts[option] = (False if value else None) if param.startswith("no_") else value
    return opts


def flag_for(option: str) -> Optional[str]:
    """The flag of ``edgepack profile`` that sets a device option, read from the command's own options
    (None for an option only the Python API sets).

    Example: ``flag_for("energy")  # "--no-energy"``.
    """
    param = _OPTION_PARAM.get(option, option)
    for p in profile.params:
        if p.name == param and isinstance(p, click.Option):
            return max(p.opts, key=len)
    return None


def _open(spec: str, options: dict):
    """open_device, its unsupported-option error worded with this command's flags."""
    from ..devices.registry import UnsupportedOptions, open_device
    from ..errors import UsageError

    try:
        return open_device(spec, **options)
    except UnsupportedOptions as e:
        raise UsageError(e.describe(flag_for)) from None


def _emit(results, comparing, as_json, out, append_report) -> None:
    from ..devices.compare import compare

    if comparing:
        rows = compare(*results)
        data = {"a": results[0].model_dump(mode="json"), "b": results[1].model_dump(mode="json"),
                "comparison": [r.as_dict() for r in rows]}
    else:
        data = results[0].model_dump(mode="json")
    if _save(data, results, out, append_report, as_json):
        from .profile_view import render_comparison, render_result

        if comparing:
            render_comparison(results, compare(*results))
        else:
            render_result(results[0])


def _save(data, results, out, append_report, as_json) -> bool:
    """Write --out and --append-report, print JSON if asked; True when a table is wanted instead."""
    from ..devices.store import append_profiles, write_json

    if out:
        write_json(out, data)
    if append_report:
        append_profiles(append_report, results)
    if as_json:
        echo_json(data)
    return not as_json


def _profile_many(artifact, specs, options, settings, quiet, as_json, out, append_report) -> None:
    """The same build on each device in turn; a device that fails is reported, the rest still run."""
    from ..devices.compare import spread
    from ..errors import DeviceError

    results, failed = [], []
    for s in specs:
        if not quiet:
            click.echo(f"profiling {artifact} on {s} ...", err=True)
        try:
            with _open(s, options) as dev:
                results.append(dev.profile(artifact, settings))
        except DeviceError as e:
            failed.append({"device": s, "error": str(e)})
            if not quiet:
                click.echo(f"  {s} failed: {e}", err=True)
    if not results:
        raise DeviceError(f"no device could be profiled: {failed[0]['device']}: {failed[0]['error']}"
                          + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""))
    rows = spread(results)
    data = {"results": [r.model_dump(mode="json") for r in results], "failed": failed,
            "comparison": [r.as_dict() for r in rows]}
    if _save(data, results, out, append_report, as_json):
        from .profile_view import render_spread

        render_spread(results, rows, failed)
    if failed:
        raise DeviceError(f"{len(failed)} of {len(specs)} devices failed ({', '.join(f['device'] for f in failed)}); "
                          f"{failed[0]['device']}: {failed[0]['error']}")
