"""Error messages name the flag the user typed: ``--no-energy``, not the option's keyword ``energy``.

The library names device options by keyword (it knows no CLI); ``edgepack profile`` rewords with
its own flags, read from its click options. A static scan also checks that every ``--flag`` written
in edgepack's messages is a real flag of some edgepack command (or of an external tool it names).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click
import pytest

from edgepack.devices.registry import DEVICES, UnsupportedOptions, device_class, open_device
from locations import ROOT


# Flags of other programs that edgepack's messages and command lines quote.
EXTERNAL = {"--no-install-recommends",                                          # apt-get
            "--chip", "--format", "--no-wait", "--pack", "--targets",                  # pyocd, esptool
            "--fqbn", "--input-dir", "--library", "--output-dir", "--verify",          # arduino-cli
            "--only-section", "--ser",                                                 # picotool
            "--config", "--graph",                                                     # bazel, benchmark_model
            "--gc-sections", "--specs"}                                                # arm-none-eabi-gcc


def _command_flags() -> set[str]:
    from edgepack.cli import cli

    ctx = click.Context(cli)
    flags = {o for p in cli.params for o in p.opts + p.secondary_opts} | {"--help"}
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        flags |= {o for p in cmd.params if isinstance(p, click.Option) for o in p.opts + p.secondary_opts}
    return {f for f in flags if f.startswith("--")}


@pytest.mark.parametrize("flag", ["--no-energy", "--no-xnnpack", "--no-check-output"])
def test_refusal_names_the_negative_flag_typed(run_cli, tmp_path, flag):
    r = run_cli("profile", tmp_path / "m.tflite", "--device", "host", flag)
    assert r.exit_code == 2 and len(r.err.strip().splitlines()) == 1, r.err
    assert f"does not take {flag};" in r.err and "its options: --timeout" in r.err
    positive = "--" + flag[len("--no-"):]
    assert not re.search(rf"{re.escape(positive)}\b", r.err.replace(flag, "")), r.err


def test_refusal_lists_the_flags_the_device_takes(run_cli, tmp_path):
    r = run_cli("profile", tmp_path / "m.tflite", "--device", "qemu:mps2-an386", "--no-xnnpack", "--profile",
                "nucleo-l4r5zi", "--probe", "pyocd")
    assert r.exit_code == 2, r.err
    took, _, takes = r.err.partition("; its options: ")
    assert set(re.findall(r"--[a-z-]+", took)) == {"--no-xnnpack", "--probe"}
    assert set(re.findall(r"--[a-z-]+", takes)) == {"--no-check-output", "--kernels", "--profile", "--tflm-root",
                                                    "--timeout"}
    assert "device_profile" not in r.err and "check_output" not in r.err


def test_library_names_options_by_keyword_and_keeps_them():
    with pytest.raises(UnsupportedOptions) as e:
        open_device("host", energy=False, check_output=False)
    assert e.value.unknown == ("check_output", "energy") and e.value.accepted == ("timeout",)
    assert "--" not in str(e.value) and "energy=" in str(e.value)
    assert e.value.describe({"energy": "--no-energy", "check_output": "--no-check-output",
                             "timeout": "--timeout"}.get).startswith(
        "device 'host' does not take --no-check-output, --no-energy; its options: --timeout")
    import pickle

    assert str(pickle.loads(pickle.dumps(e.value))) == str(e.value)  # crosses a process (Ray) intact


def test_every_device_option_with_a_flag_round_trips_through_the_cli():
    """flag_for(option) is a real `profile` flag, and that flag given on the command line sets that option."""
    from edgepack.cli.profile_cmd import _options, flag_for, profile

    by_flag = {max(p.opts, key=len): p for p in profile.params if isinstance(p, click.Option)}
    defaults = {p.name: (() if p.multiple else None) for p in profile.params if isinstance(p, click.Option)}
    seen = set()
    for prefix in DEVICES:
        for option in device_class(prefix).option_names:
            flag = flag_for(option)
            if flag is None:
                continue
            seen.add(option)
            param = by_flag[flag]
            given = dict(defaults, **{param.name: ("x",) if param.multiple else True})
            device_params = {k: v for k, v in given.items() if k not in {
                "artifact", "spec", "runs", "warmup", "threads", "compare", "as_json", "out", "append_report",
                "quiet", "help"}}
            opts = {k: v for k, v in _options(device_params).items() if v is not None}
            assert list(opts) == [option], (flag, opts)
    assert {"energy", "xnnpack", "check_output", "profile", "timeout"} <= seen


def test_every_flag_edgepack_writes_exists():
    """Every --flag in a string literal of edgepack/ is one of its commands' flags, or an external tool's."""
    flags = _command_flags()
    bad = []
    for path in sorted((ROOT / "edgepack").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for f in re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*", node.value):
                    if f not in flags and f not in EXTERNAL and "_" not in f:  # snake_case: benchmark_model's
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {f}")
    assert not bad, bad


@pytest.mark.parametrize("target, flag, value, for_target", [
    ("android", "--device", "nucleo-l4r5zi", "tflm"), ("android", "--array-name", "g_model", "tflm"),
    ("tflm", "--input-kind", "image", "android"), ("tflm", "--sample-rate", "16000", "android")])
def test_package_refuses_a_flag_of_another_target_naming_the_flag(run_cli, tmp_path, target, flag, value, for_target):
    out = tmp_path / "out"
    r = run_cli("package", tmp_path / "m.h5", "--target", target, flag, value, "--out", out)
    assert r.exit_code == 2 and len(r.err.strip().splitlines()) == 1, r.err
    assert f"{flag} (" in r.err and f"is for --target {for_target}; target '{target}' does not take it" in r.err
    assert "option(s)" not in r.err and "_" not in r.err.split("(")[0] and not out.exists()


def test_device_help_says_profile_in_package_and_spec_in_profile(run_cli):
    r = run_cli("package", "--help")
    assert r.exit_code == 0
    assert "--device PROFILE" in r.out and "device profile" in " ".join(r.out.split())
    r = run_cli("profile", "--help")
    assert r.exit_code == 0
    assert "--device SPEC" in r.out and "a device spec; a device profile is --profile" in " ".join(r.out.split())


def test_pipeline_names_target_options_by_keyword(tmp_path):
    from edgepack.errors import UsageError
    from edgepack.pipeline import PackageRequest, package

    with pytest.raises(UsageError, match=r"^target 'android' does not take device=; its options: input_kind=, "
                                         r"sample_rate=$"):
        package(PackageRequest(model=tmp_path / "m.h5", out=tmp_path / "out", target="android",
                               target_options={"device": "nucleo-l4r5zi"}))
    assert not (tmp_path / "out").exists()
