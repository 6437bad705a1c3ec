"""``edgepack profile`` and ``edgepack devices`` through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgepack.devices.android.adb import ensure_key
from edgepack.devices.result import ProfileResult
from emulators.adb_device import AdbEmulator, install_benchmark_model


@pytest.fixture(scope="module")
def models(mlperf_dir):
    return mlperf_dir / "ad01_int8.tflite", mlperf_dir / "kws_ref_model.tflite"


def test_host_profile_json_and_out_file(run_cli, models, tmp_path):
    out = tmp_path / "r.json"
    r = run_cli("profile", models[1], "--device", "host", "--runs", "7", "--warmup", "1",
                "--json", "--out", out, "-q")
    assert r.exit_code == 0, r.err
    shown = ProfileResult.model_validate_json(r.out)
    saved = ProfileResult.model_validate_json(out.read_text())
    assert shown == saved and shown.latency.n == 7 and shown.settings.warmup == 1
    assert not list(tmp_path.glob(".*tmp"))  # no temp file left beside it


def test_human_table_labels_sources(run_cli, models):
    r = run_cli("profile", models[0], "--runs", "3", "-q")
    assert r.exit_code == 0, r.err
    assert "latency median" in r.out and "measured" in r.out
    assert "energy / inference" in r.out and "n/a" in r.out  # never a fake 0


def test_compare_prints_ratios_of_the_two_results(run_cli, models):
    r = run_cli("profile", "--compare", *models, "--runs", "15", "--json", "-q")
    assert r.exit_code == 0, r.err
    data = json.loads(r.out)
    a, b = ProfileResult.model_validate(data["a"]), ProfileResult.model_validate(data["b"])
    rows = {row["metric"]: row for row in data["comparison"]}
    assert rows["latency median"]["ratio"] == pytest.approx(b.latency.median_us / a.latency.median_us)
    assert rows["model size"]["ratio"] == pytest.approx(b.artifact.size_bytes / a.artifact.size_bytes)
    assert "energy / inference" not in rows  # available on neither: no row, not a 0 or 1.0 ratio
    table = run_cli("profile", "--compare", *models, "--runs", "3", "-q")
    assert "B/A" in table.out and "x" in table.out


def test_append_report_keeps_the_report_and_adds_profiles(run_cli, models, tmp_path):
    pkg = tmp_path / "pkg"
    assert run_cli("package", models[1], "--out", pkg, "-q").exit_code == 0
    before = json.loads((pkg / "report.json").read_text())
    for _ in range(2):
        assert run_cli("profile", pkg, "--runs", "3", "--append-report", pkg, "-q").exit_code == 0
    report = json.loads((pkg / "report.json").read_text())
    assert {k: v for k, v in report.items() if k != "profiles"} == before and len(report["profiles"]) == 2
    from edgepack.report.schema import load_report

    assert len(load_report(pkg).profiles) == 2  # still a valid package report
    assert ProfileResult.model_validate(report["profiles"][0]).artifact.size_bytes == (pkg / "model.tflite").stat().st_size
    assert "Profiles" in (pkg / "report.md").read_text()


@pytest.mark.parametrize("args, words", [
    (["--append-report", "{tmp}"], "no report.json there"),
    (["--out", "{tmp}/missing/r.json"], "does not exist; create it first"),
    (["--device", "phone"], "unknown device 'phone'"),
    (["--device", "host", "--benchmark-binary", "x"], "does not take --benchmark-binary"),
    (["--runs", "0"], "--runs 0"),
])
def test_usage_errors_exit_2_with_one_line(run_cli, models, tmp_path, args, words):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = run_cli("profile", models[0], *args, "-q")
    assert r.exit_code == 2 and words in r.err and r.err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_needs_one_artifact_or_compare(run_cli, models):
    assert run_cli("profile").exit_code == 2
    assert "not both" in run_cli("profile", models[0], "--compare", *models).err


def test_adb_through_the_cli_and_no_partial_file_on_disconnect(run_cli, models, tmp_path):
    key = ensure_key(tmp_path / "k" / "adbkey")
    binary = install_benchmark_model(tmp_path / "benchmark_model", sys.executable)
    pub = Path(str(key) + ".pub").read_text()
    common = ["--benchmark-binary", binary, "--adb-key", key, "--runs", "5", "--warmup", "1", "-q"]
    with AdbEmulator(tmp_path / "dev", authorized_keys=[pub]) as emu:
        ok = run_cli("profile", models[1], "--device", f"adb-tcp:{emu.serial}", "--no-energy",
                     "--op-profiling", "--out", tmp_path / "adb.json", *common)
        assert ok.exit_code == 0, ok.err
        r = ProfileResult.model_validate_json((tmp_path / "adb.json").read_text())
        assert r.device.kind == "adb" and r.latency.n == 5 and r.ops
        assert "TfLiteXNNPackDelegate" in ok.out
    with AdbEmulator(tmp_path / "dev2", authorized_keys=[pub], drop_on="benchmark_model --graph") as emu:
        bad = run_cli("profile", models[1], "--device", f"adb-tcp:{emu.serial}", "--no-energy",
                      "--out", tmp_path / "gone.json", *common)
    assert bad.exit_code == 1 and "disconnected" in bad.err
    assert not (tmp_path / "gone.json").exists()


def test_devices_lists_host_serial_and_a_reachable_adb_tcp(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("ADB_SERVER_SOCKET", "tcp:127.0.0.1:9")  # no server: a hermetic listing
    with AdbEmulator(tmp_path / "dev") as emu:
        r = run_cli("devices", "--adb-tcp", emu.serial, "--adb-tcp", "127.0.0.1:1", "--no-usb", "--json")
    assert r.exit_code == 0, r.err
    entries = {e["spec"]: e for e in json.loads(r.out)}
    assert entries["host"]["status"] == "available"
    assert entries[f"adb-tcp:{emu.serial}"]["status"] == "available"
    assert entries["adb-tcp:127.0.0.1:1"]["status"].startswith("unreachable")
    assert "estimate:nucleo-l4r5zi" in entries and "qemu:mps2-an386" in entries


def test_help_does_not_import_tensorflow():
    code = ("import sys; from edgepack.cli import main; sys.argv=['edgepack','profile','--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "import sys; print('TF' if 'tensorflow' in sys.modules else 'noTF')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "--benchmark-binary" in out and out.strip().endswith("noTF")


def test_serial_board_through_the_cli(run_cli, models, tmp_path):
    from emulators.serial_board import SerialBoardEmulator

    kws = models[1]
    with SerialBoardEmulator(kws.read_bytes(), clock_hz=120_000_000, name="kws") as board:
        r = run_cli("profile", kws, "--device", f"serial:{board.port}", "--profile", "nucleo-l4r5zi",
                    "--runs", "3", "--warmup", "1", "--handshake-timeout", "10", "--json", "-q")
    assert r.exit_code == 0, r.err
    res = ProfileResult.model_validate_json(r.out)
    assert res.device.kind == "serial" and res.latency.n == 3 and res.latency.cycles
    assert res.energy.source in ("estimated", "not_available")  # never "measured" from a power model


def test_files_written_together_are_all_kept_when_one_write_fails(tmp_path):
    """append_profiles replaces report.json/.md/.html together: a write that fails (here a real
    EFBIG from a file-size limit, as a full disk would) leaves every file as it was."""
    import subprocess
    import sys

    a, b = tmp_path / "report.json", tmp_path / "report.html"
    a.write_text("old json")
    b.write_text("old html")
    code = ("import resource, signal, sys; from pathlib import Path; "
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)); "
            "from edgepack.fsutil import atomic_write_texts; "
            "atomic_write_texts({Path(sys.argv[1]): 'new json', Path(sys.argv[2]): 'x' * 100000})")
    r = subprocess.run([sys.executable, "-c", code, str(a), str(b)], capture_output=True, text=True)
    assert r.returncode != 0 and "report.html" in r.stderr
    assert a.read_text() == "old json" and b.read_text() == "old html"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.json"]  # no temporary left
