"""``edgepack profile``: run a .tflite or package folder on a device and report the figures."""

from __future__ import annotations

from pathlib import Path

import click

from .common import echo_json

UNITS = ["auto", "uA", "mA", "A"]
SIGNS = ["auto", "positive-discharge", "negative-discharge"]


def _device_options(f):
    opts = [
        click.option("--timeout", type=float, help="Seconds before a device that stops answering is an error."),
        click.option("--benchmark-binary", type=click.Path(path_type=Path),
                     help="adb: TFLite benchmark_model built for the phone's ABI."),
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
@click.option("--device", "-d", "spec", default="host", show_default=True,
              help="host, adb:SERIAL, adb-tcp:HOST:PORT, serial:PORT, qemu:mps2-an386, board:PROFILE "
                   "or estimate:PROFILE.")
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

    \b
    Examples:
      edgepack profile build/android/model.tflite --device host --runs 100
      edgepack profile build/android --device adb-tcp:192.168.1.7:5555 \\
        --benchmark-binary ./android_aarch64_benchmark_model
      edgepack profile --compare float.tflite int8.tflite --device host
      edgepack profile build/firmware --device board:nucleo-l4r5zi --port /dev/ttyACM0 \\
        --tflm-root ~/src/tflite-micro
    """
    from ..devices.base import open_device
    from ..devices.result import Settings
    from ..errors import UsageError

    if bool(artifact) == bool(compare):
        raise UsageError("give one ARTIFACT, or two with --compare A B (not both)")
    from ..devices.store import check_out, read_report

    if out:
        check_out(out)
    if append_report:
        read_report(append_report)
    options = _options(device_opts)
    settings = Settings(runs=runs, warmup=warmup, threads=threads)
    paths = list(compare) if compare else [artifact]
    with open_device(spec, **options) as dev:
        results = []
        for p in paths:
            if not quiet:
                click.echo(f"profiling {p} on {spec} ...", err=True)
            results.append(dev.profile(p, settings))
    _emit(results, bool(compare), as_json, out, append_report)


def _options(opts: dict) -> dict:
    opts = dict(opts)
    opts["profile"] = opts.pop("device_profile")
    opts["energy"] = False if opts.pop("no_energy") else None
    opts["check_output"] = False if opts.pop("no_check_output") else None
    opts["xnnpack"] = False if opts.pop("no_xnnpack") else None
    return opts


def _emit(results, comparing, as_json, out, append_report) -> None:
    from ..devices.compare import compare
    from ..devices.store import append_profiles, write_json

    if comparing:
        rows = compare(*results)
        data = {"a": results[0].model_dump(mode="json"), "b": results[1].model_dump(mode="json"),
                "comparison": [r.as_dict() for r in rows]}
    else:
        data = results[0].model_dump(mode="json")
    if out:
        write_json(out, data)
    if append_report:
        append_profiles(append_report, results)
    if as_json:
        echo_json(data)
    else:
        from .profile_view import render_comparison, render_result

        if comparing:
            render_comparison(results, compare(*results))
        else:
            render_result(results[0])
