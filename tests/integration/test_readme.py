"""The README is a test: every shell command in README.md, and every command edgepack writes into a bundle's
README, runs here as written, on the bundled data, with the edgepack console script of this venv.

The commands are read from the files themselves (```sh blocks of README.md, the Makefile's demo recipe, and
fenced or inline commands of the bundles' READMEs). Each one must have a row in ``TABLE`` below, which says
which test runs it and lists every substitution with its reason; a command without a row, a row without a
command and a substitution that no longer matches its command all fail ``test_every_readme_command_is_in_the_table``
(or, for the bundles, the walkthrough). Commands run in a temporary folder holding symlinks ``examples`` and
``calibration_data`` to the repository's (``build/`` is written there; the repository is never touched), in
README order: later blocks use earlier blocks' ``build/`` output. The fast blocks run in the default suite
(``test_readme_walkthrough``); search and the device stand-ins (ADB, serial, board, QEMU) are ``slow``.

Devices are stand-ins that speak the real protocols: phones are tests/emulators/adb_device.py (the ADB wire
protocol) attached to a real adb server (Debian's ``adb`` on a loopback port), a serial board is
tests/emulators/serial_board.py on a pty, boards and QEMU are qemu-system-arm (mps2-an386). Nothing here
imports ``edgepack.devices``: everything goes through the CLI.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MAKEFILE = ROOT / "Makefile"
BIN = Path(sys.executable).parent  # the venv whose `edgepack` console script runs every command
TFLM_ROOT = os.environ.get("EDGEPACK_TFLM_ROOT")
TFLM_ROOT = str(Path(TFLM_ROOT).resolve()) if TFLM_ROOT else None  # the commands run in another folder
QEMU_BOARD = ROOT / "tests/data/flash/mps2-an386-gdb.yaml"
HAVE = {t: shutil.which(t) is not None for t in ("adb", "arm-none-eabi-gcc", "qemu-system-arm", "gdb-multiarch",
                                                 "cmake", "cc")}


# ----------------------------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class Sub:
    written: str  # text of the command as written
    run_as: str   # what runs instead ({placeholders} are filled by the test at run time)
    why: str


@dataclass(frozen=True)
class Row:
    source: str   # README.md block N (1-based), Makefile demo, or a bundle README
    command: str  # as written (continuation lines joined, the trailing comment dropped)
    test: str     # the test function that runs it
    subs: tuple[Sub, ...] = ()
    how: str = ""  # when it is not run as a subprocess: what the test does instead, and why


ADB_SERVER = ("a real adb server (Debian's adb on a loopback port, ADB_SERVER_SOCKET) with phones emulated by "
              "tests/emulators/adb_device.py attached by `adb connect`")
BM = ("./benchmark_model", "./benchmark_model",
      "written into the folder by install_benchmark_model: the emulated benchmark_model (runs the model in LiteRT)")
TFLM = Sub("~/tflite-micro", "{tflm_root}", "$EDGEPACK_TFLM_ROOT: the TFLM tree CI has (none is bundled)")

TABLE: tuple[Row, ...] = (
    Row("README.md block 1", "make demo", "test_readme_make_demo",
        how="runs the Makefile's demo recipe lines (see the Makefile demo rows) in a fresh folder of its own: "
            "`make` would first create a .venv (it writes build/demo, so block 2's build/android is still free)"),
    Row("README.md block 1", "make test", "test_every_readme_command_is_in_the_table",
        how="checks that the Makefile's test recipe is `pytest -n 2 -q`, as the README's Tests section says: "
            "running the suite inside the suite makes no sense"),
    Row("Makefile demo", "$(BIN)/edgepack package examples/mnist/model.h5 --target android --recipe "
        "examples/mnist/recipe.yaml --calibration calibration_data/mnist/calib.npz --eval "
        "calibration_data/mnist/eval.npz --labels examples/mnist/labels.txt --out build/demo --force",
        "test_readme_make_demo",
        (Sub("$(BIN)/edgepack", "edgepack", "the venv's console script, on PATH (make setup's $(BIN))"),)),
    Row("Makefile demo", "$(BIN)/edgepack inspect build/demo/model.tflite", "test_readme_make_demo",
        (Sub("$(BIN)/edgepack", "edgepack", "the venv's console script, on PATH (make setup's $(BIN))"),)),
    Row("README.md block 2", "edgepack package examples/mnist/model.h5 --target android --recipe "
        "examples/mnist/recipe.yaml --calibration calibration_data/mnist/calib.npz --eval "
        "calibration_data/mnist/eval.npz --labels examples/mnist/labels.txt --out build/android",
        "test_readme_walkthrough"),
    Row("README.md block 3", "edgepack package examples/mnist/model.h5 --target tflm --device nucleo-l4r5zi "
        "--recipe examples/mnist/recipe.yaml --calibration calibration_data/mnist/calib.npz --out build/firmware",
        "test_readme_walkthrough"),
    Row("README.md block 4", "edgepack search examples/mnist/model.h5 --target android --recipe "
        "examples/mnist/recipe.yaml --calibration calibration_data/mnist/calib.npz --train "
        "calibration_data/mnist/train.npz --eval calibration_data/mnist/eval.npz --max-accuracy-drop 1.0 "
        "--objective size --trials 40 --out build/search", "test_readme_search",
        (Sub("--trials 40", "--trials 3 --epochs 1",
             "a smaller budget: 3 trials (plain int8 + 2 proposals) with 1 fine-tune epoch per step"),)),
    Row("README.md block 5", "edgepack profile build/android --device host --runs 100", "test_readme_walkthrough"),
    Row("README.md block 5", "edgepack profile build/android --device adb --benchmark-binary ./benchmark_model",
        "test_readme_profile_adb",
        (Sub("--device adb", "--device adb", f"`adb` = the only phone that {ADB_SERVER} holds"), Sub(*BM))),
    Row("README.md block 5", "edgepack profile build/android --device adb:R58M123ABC --benchmark-binary "
        "./benchmark_model", "test_readme_profile_adb",
        (Sub("R58M123ABC", "{serial}", f"the serial of an emulated phone held by {ADB_SERVER}"), Sub(*BM))),
    Row("README.md block 5", "edgepack profile build/android --device adb:all --benchmark-binary "
        "arm64-v8a=./bm64 --benchmark-binary armeabi-v7a=./bm32", "test_readme_profile_adb",
        (Sub("adb:all", "adb:all", f"two phones (arm64-v8a and armeabi-v7a) held by {ADB_SERVER}"),
         Sub("./bm64", "./bm64", "the emulated benchmark_model for arm64-v8a, written into the folder"),
         Sub("./bm32", "./bm32", "the emulated benchmark_model for armeabi-v7a, written into the folder"))),
    Row("README.md block 5", "edgepack profile build/android --device adb-tcp:192.168.1.7:5555 "
        "--benchmark-binary ./benchmark_model", "test_readme_profile_adb",
        (Sub("192.168.1.7:5555", "{direct}", "an emulated phone's loopback address (never a real network): "
                                             "direct TCP with edgepack's own key, which the phone accepts"),
         Sub(*BM))),
    Row("README.md block 5", "edgepack profile build/firmware --device board:nucleo-l4r5zi --port /dev/ttyACM0 "
        "--tflm-root ~/tflite-micro", "test_readme_profile_board",
        (Sub("board:nucleo-l4r5zi", "board:{board} --probe gdb:127.0.0.1:{gdb}",
             "the QEMU-backed board profile of tests/devices/test_board.py: mps2-an386 halted, flashed over its GDB stub "
             "(a free loopback port, so --probe names it) instead of the NUCLEO's ST-Link"),
         Sub("/dev/ttyACM0", "socket://127.0.0.1:{uart}", "QEMU's UART on a loopback port"), TFLM)),
    Row("README.md block 5", "edgepack profile build/firmware --device serial:/dev/ttyACM0 --profile nucleo-l4r5zi",
        "test_readme_profile_serial",
        (Sub("/dev/ttyACM0", "{pty}", "a pty running tests/emulators/serial_board.py (harness protocol v1, the "
                                      "packaged model in the TFLM host interpreter)"),)),
    Row("README.md block 5", "edgepack profile build/firmware --device qemu:mps2-an386 --tflm-root ~/tflite-micro",
        "test_readme_profile_qemu", (TFLM,)),
    Row("README.md block 5", "edgepack profile build/firmware --device estimate:nucleo-l4r5zi",
        "test_readme_walkthrough"),
    Row("README.md block 5", "edgepack profile --compare a.tflite b.tflite --device host", "test_readme_walkthrough",
        (Sub("a.tflite", "build/android/model.tflite", "a model built by block 2"),
         Sub("b.tflite", "build/firmware/model.tflite", "a model built by block 3"))),
    Row("README.md block 5", "edgepack devices", "test_readme_walkthrough"),
    Row("README.md block 6", "edgepack inspect build/android/model.tflite --tensors", "test_readme_walkthrough"),
    Row("README.md block 6", "edgepack inspect examples/mnist/model.h5 --json", "test_readme_walkthrough"),
    # -- what edgepack writes into the bundles' READMEs
    Row("build/android/README.md", "edgepack unpack model.tflite.epk model.tflite", "test_readme_walkthrough",
        how="runs in a folder holding only a copy of model.tflite.epk (as a phone that downloaded it), so the "
            "restored model.tflite is compared byte for byte with the bundle's"),
    Row("build/android/epk/README.md", "cc -std=c99 -O2 epk_unpack.c epk.c -o epk_unpack",
        "test_readme_walkthrough", how="runs in build/android/epk/c; the tool then restores model.tflite.epk"),
    Row("build/firmware/README.md", "-DEDGEPACK_TFLM_ROOT=<tflite-micro tree>", "test_firmware_readme_cmake",
        (Sub("<tflite-micro tree>", "{tflm_root}", "$EDGEPACK_TFLM_ROOT"),),
        how="`cmake -S build/firmware -B B -DEDGEPACK_TFLM_ROOT=...`, build g_model_inference_example and run it: "
            "it must print the top class the README promises"),
    Row("build/firmware/README.md", "-DEDGEPACK_TFLM_TARGET=<your TFLM target>", "test_firmware_readme_cmake",
        (Sub("<your TFLM target>", "tflm_headers", "an INTERFACE target of the TFLM tree's headers (what a user's "
                                                   "TFLM library target exports)"),),
        how="a parent project does add_subdirectory(build/firmware) with the option and builds g_model_inference "
            "and g_model_harness (static libraries: compiled against the TFLM headers)"),
    Row("build/firmware/README.md", "west build ... -- -DZEPHYR_EXTRA_MODULES=<this folder>",
        "test_firmware_readme_cmake",
        (Sub("west build ... --", "cmake -S {app} -B {b}", "no Zephyr SDK or west offline: an application built "
             "with Zephyr's library functions reduced to what they do to targets "
             "(tests/targets/test_firmware_layouts.py ZEPHYR_CMAKE_SHIM) that adds each ZEPHYR_EXTRA_MODULES entry by its "
             "zephyr/module.yml build.cmake, as zephyr_module.py does, with the README's CONFIG_ lines"),
         Sub("<this folder>", "{fw}", "build/firmware")),
        how="configures the application and builds it (it includes model_config.h, model_data.h, ep_inference.h "
            "through the module's zephyr_interface)"),
)


# ----------------------------------------------------------------------------------------------- parsing

PROGRAMS = {"edgepack", "cc", "gcc", "g++", "cmake", "make", "west", "idf.py", "pio", "arduino-cli", "adb",
            "python", "python3", "pip", "java", "javac", "sh", "bash", "./epk_unpack"}
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[A-Za-z]*)[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.M | re.S)


def _commands(body: str) -> list[str]:
    """Shell commands of a block: continuation lines joined, blank lines and trailing comments dropped."""
    out = []
    for line in re.sub(r"\\\n", " ", body).splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line)
        line = " ".join(line.split())
        if line:
            out.append(line)
    return out


def sh_blocks(markdown: str) -> list[list[str]]:
    """The commands of each ```sh / ```bash / ```shell / ```console block, in order."""
    return [_commands(m["body"]) for m in FENCE.finditer(markdown) if m["lang"] in ("sh", "bash", "shell", "console")]


def bundle_commands(markdown: str) -> list[str]:
    """Commands a generated README gives: its shell blocks, and inline code spans that start with a program
    (or are a `-D` CMake option)."""
    found = [c for block in sh_blocks(markdown) for c in block]
    prose = FENCE.sub("", markdown)
    for span in re.findall(r"`([^`\n]+)`", prose):
        first = span.split()[0] if span.split() else ""
        if first in PROGRAMS or re.match(r"-D[A-Z_]+=", first):
            found.append(" ".join(span.split()))
    return found


def makefile_recipe(target: str) -> list[str]:
    """The recipe lines of a Makefile target (continuations joined)."""
    text = MAKEFILE.read_text()
    m = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)+)", text, re.M)
    assert m, f"the Makefile has no {target} target"
    return _commands("".join(ln[1:] + "\n" for ln in m.group(1).splitlines()))


def readme_rows() -> list[tuple[str, str]]:
    """(source, command) of every command in README.md's shell blocks and the Makefile demo recipe."""
    got = [(f"README.md block {i}", c) for i, block in enumerate(sh_blocks(README.read_text()), 1) for c in block]
    return got + [("Makefile demo", c) for c in makefile_recipe("demo")]


def check_covered(found: list[tuple[str, str]], sources: set[str]) -> None:
    """Every command found has exactly one row, every row of these sources a command, every sub a match."""
    rows = [(r.source, r.command) for r in TABLE if r.source in sources]
    missing = [f for f in found if f not in rows]
    assert not missing, f"commands without a row in TABLE (add one, saying how the test runs them): {missing}"
    stale = [r for r in rows if r not in found]
    assert not stale, f"TABLE rows whose command is no longer in the file: {stale}"
    assert len(set(rows)) == len(rows), "a command has two rows"
    for r in TABLE:
        if r.source in sources:
            for s in r.subs:
                assert s.written in r.command, f"substitution {s.written!r} matches nothing in {r.command!r}"


def loopback_only(text: str) -> None:
    """Refuse a command that names a network address other than loopback (the README's phone is not ours)."""
    far = [a for a in re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", text) if not a.startswith("127.")]
    assert not far, f"{text!r} would reach {far}: stand-ins listen on loopback only"


def row(source: str, command: str) -> Row:
    return next(r for r in TABLE if (r.source, r.command) == (source, command))


def applied(r: Row, **values: str) -> str:
    text = r.command
    for s in r.subs:
        assert s.written in text, f"substitution {s.written!r} matches nothing in {text!r}"
        text = text.replace(s.written, s.run_as.format(**values))
    return text


# ----------------------------------------------------------------------------------------------- running

def _env(**extra: str) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)  # this checkout's code runs through the venv's console script
    for k in ("ADB_SERVER_SOCKET", "ANDROID_SERIAL", "ANDROID_ADB_SERVER_PORT"):
        env.pop(k, None)
    env.update(extra)
    return env


class Workspace:
    """A temporary folder with `examples` and `calibration_data` linked to the repository's."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        for name in ("examples", "calibration_data"):
            (path / name).symlink_to(ROOT / name, target_is_directory=True)
        self.built: set[str] = set()

    def run(self, source: str, command: str, *, cwd: Optional[Path] = None, env: Optional[dict] = None,
            timeout: float = 900, prerequisite: bool = False, expect: int = 0, **values: str):
        """Run one table row (as written, its substitutions applied); fail on an unexpected exit status."""
        r = row(source, command)
        current = os.environ.get("PYTEST_CURRENT_TEST", "").split("::")[-1].split(" ")[0].split("[")[0]
        assert prerequisite or r.test == current, f"TABLE says {r.test} runs {command!r}, not {current}"
        text = applied(r, **values)
        loopback_only(text)
        argv = shlex.split(text)
        p = subprocess.run(argv, cwd=cwd or self.path, env=env or _env(), capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        assert p.returncode == expect, (f"{source}: `{text}` exited {p.returncode}\n--- stdout\n{p.stdout[-3000:]}"
                                        f"\n--- stderr\n{p.stderr[-4000:]}")
        return p

    def ensure(self, what: str) -> None:
        """Blocks 2 and 3 (the builds later blocks use), once per workspace."""
        if what in self.built:
            return
        block = {"android": 2, "firmware": 3}[what]
        self.run(f"README.md block {block}", row_cmd(block), prerequisite=True)
        out = self.path / "build" / what
        promised = {"android": ["model.tflite", "labels.txt", "manifest.json", "README.md", "model.tflite.epk",
                                "recipe.yaml", "report.json", "report.md"],
                    "firmware": ["model_data.h", "model_data.cc", "model_ops.h", "model_config.h",
                                 "harness/ep_inference.cc", "CMakeLists.txt", "zephyr/module.yml",
                                 "zephyr/CMakeLists.txt", "zephyr/Kconfig", "idf_component.yml", "README.md",
                                 "arduino/edgepack_g_model/library.properties"]}[what]
        absent = [f for f in promised if not (out / f).is_file()]
        assert not absent, f"build/{what} lacks what the README promises: {absent}"
        self.built.add(what)


def row_cmd(block: int) -> str:
    """The one command of README block ``block``."""
    (cmd,) = sh_blocks(README.read_text())[block - 1]
    return cmd


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("readme") / "work")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


B5 = "README.md block 5"


# ----------------------------------------------------------------------------------------------- default suite

def test_every_readme_command_is_in_the_table():
    found = readme_rows()
    check_covered(found, {r.source for r in TABLE if r.source.startswith(("README.md", "Makefile"))})
    assert len(sh_blocks(README.read_text())) == 6, "README.md has a new shell block: give its commands rows"
    # `make test`: the Makefile runs what the README says it runs
    assert makefile_recipe("test") == ["$(BIN)/pytest -n 2 -q"]
    assert "`make test` runs the default suite (`pytest -n 2`" in README.read_text()
    names = {r.test for r in TABLE}
    assert names <= set(globals()), f"TABLE names tests that do not exist: {names - set(globals())}"


def test_the_parser_refuses_what_the_table_does_not_cover():
    """The coverage check itself can fail: a new command, a stale row, a substitution matching nothing."""
    found = readme_rows()
    with pytest.raises(AssertionError, match="without a row"):
        check_covered(found + [("README.md block 5", "edgepack profile x --device y")], {s for s, _ in found})
    with pytest.raises(AssertionError, match="no longer in the file"):
        check_covered(found[1:], {s for s, _ in found})
    broken = Row("README.md block 5", "edgepack devices", "x", (Sub("--gone", "y", "z"),))
    with pytest.raises(AssertionError, match="matches nothing"):
        applied(broken)
    with pytest.raises(AssertionError, match="loopback only"):
        loopback_only(applied(row("README.md block 5", next(c for s, c in found if "adb-tcp:" in c)),
                              direct="192.168.1.7:5555"))
    loopback_only(applied(row("README.md block 5", next(c for s, c in found if "adb-tcp:" in c)),
                          direct="127.0.0.1:5555"))
    md = "x\n```sh\nedgepack a \\\n  --b c   # note\n\nmake d\n```\n`cc -o x y.c` and `edgepack.load` and `-DFOO=1`\n"
    assert sh_blocks(md) == [["edgepack a --b c", "make d"]]
    assert bundle_commands(md) == ["edgepack a --b c", "make d", "cc -o x y.c", "-DFOO=1"]


def test_readme_walkthrough(ws):
    """Blocks 2, 3, the host/estimate/compare/devices lines of block 5, block 6, and the Android bundle's README
    commands, in README order."""
    ws.ensure("android")   # block 2
    ws.ensure("firmware")  # block 3
    # block 4 (search): test_readme_search (slow)
    host = ws.run(B5, "edgepack profile build/android --device host --runs 100")
    assert re.search(r"latency", host.stdout) and "measured" in host.stdout.lower()
    est = ws.run(B5, "edgepack profile build/firmware --device estimate:nucleo-l4r5zi")
    assert "ESTIMATED" in est.stdout and "nucleo-l4r5zi" in est.stdout + est.stderr
    cmp = ws.run(B5, "edgepack profile --compare a.tflite b.tflite --device host")
    assert "B/A" in cmp.stdout and "build/firmware/model.tflite" in cmp.stdout
    dev = ws.run(B5, "edgepack devices")
    specs = [ln.split()[0] for ln in dev.stdout.splitlines() if ln.strip()]  # a pipe: one plain line per device
    assert "host" in specs and "estimate:nucleo-l4r5zi" in specs
    tensors = ws.run("README.md block 6", "edgepack inspect build/android/model.tflite --tensors")
    assert "MACs" in tensors.stdout and "quantization" in tensors.stdout and "serving_default_image" in tensors.stdout
    keras = json.loads(ws.run("README.md block 6", "edgepack inspect examples/mnist/model.h5 --json").stdout)
    assert keras["input_shape"][1:] == [28, 28, 1] and keras["params"] > 0 and keras["layers"]

    # what edgepack wrote into the Android bundle's READMEs
    android = ws.path / "build/android"
    found = [("build/android/README.md", c) for c in bundle_commands((android / "README.md").read_text())]
    found += [("build/android/epk/README.md", c) for c in bundle_commands((android / "epk/README.md").read_text())]
    firmware = [("build/firmware/README.md", c)
                for c in bundle_commands((ws.path / "build/firmware/README.md").read_text())]
    check_covered(found + firmware, {"build/android/README.md", "build/android/epk/README.md",
                                     "build/firmware/README.md"})
    phone = ws.path / "download"
    phone.mkdir()
    shutil.copy(android / "model.tflite.epk", phone)
    ws.run("build/android/README.md", "edgepack unpack model.tflite.epk model.tflite", cwd=phone)
    assert (phone / "model.tflite").read_bytes() == (android / "model.tflite").read_bytes()
    assert HAVE["cc"], "the epk README's command needs a C compiler `cc` (make system-deps installs gcc)"
    csrc = android / "epk/c"
    ws.run("build/android/epk/README.md", "cc -std=c99 -O2 epk_unpack.c epk.c -o epk_unpack", cwd=csrc)
    subprocess.run([str(csrc / "epk_unpack"), str(android / "model.tflite.epk"), str(phone / "c.tflite")],
                   check=True, timeout=60)
    assert (phone / "c.tflite").read_bytes() == (android / "model.tflite").read_bytes()


# ----------------------------------------------------------------------------------------------- slow suite

@pytest.mark.slow
def test_readme_make_demo(tmp_path):
    demo = Workspace(tmp_path / "demo")  # a fresh checkout's folder: make demo is the first thing run there
    first = makefile_recipe("demo")
    assert len(first) == 2
    demo.run("Makefile demo", first[0])
    out = demo.run("Makefile demo", first[1])
    assert "CONV_2D" in out.stdout and (demo.path / "build/demo/model.tflite").is_file()


@pytest.mark.slow
def test_readme_search(ws):
    p = ws.run("README.md block 4", row_cmd(4), timeout=3000)
    out = ws.path / "build/search"
    data = json.loads((out / "search.json").read_text())
    trials = data["trials"]
    assert len(trials) == 3, [t.get("status") for t in trials]
    failed = [(t.get("number"), t.get("error")) for t in trials if t["status"] == "failed"]
    assert failed == [], failed
    assert (out / "best" / "model.tflite").is_file() and (out / "best" / "report.json").is_file()
    assert (out / "report.html").is_file() and p.returncode == 0


@pytest.fixture
def adb_server(tmp_path):
    if not HAVE["adb"]:
        pytest.skip("Debian's adb is absent (apt-get install -y adb; make system-deps)")
    from emulators.adb_server import AdbServerProcess  # tests/ is on sys.path (its conftest.py)

    home = tmp_path / "adb-home"
    home.mkdir()
    proc = AdbServerProcess(home).start()
    yield proc
    proc.detach_all()
    proc.stop()


@pytest.mark.slow
def test_readme_profile_adb(ws, adb_server, tmp_path):
    from emulators.adb_device import AdbEmulator, install_benchmark_model

    ws.ensure("android")
    for name in ("benchmark_model", "bm64", "bm32"):
        install_benchmark_model(ws.path / name, sys.executable)
    env = _env(ADB_SERVER_SOCKET=adb_server.socket_spec, EDGEPACK_ADB_KEY=str(tmp_path / "edgepack-key" / "adbkey"))
    pub = adb_server.pubkey
    phones = [AdbEmulator(tmp_path / "pixel", authorized_keys=[pub], model="Pixel 7", abi="arm64-v8a",
                          abilist="arm64-v8a,armeabi-v7a").start(),
              AdbEmulator(tmp_path / "old", authorized_keys=[pub], model="Galaxy J5", android="9",
                          abi="armeabi-v7a", abilist="armeabi-v7a,armeabi", seed=1).start(),
              AdbEmulator(tmp_path / "wifi", accept_new_keys=True, model="Pixel 6a").start()]
    pixel, old, wifi = phones
    try:
        adb_server.attach(pixel)
        one = ws.run(B5, "edgepack profile build/android --device adb --benchmark-binary ./benchmark_model", env=env)
        assert "Pixel 7" in one.stdout and "measured" in one.stdout.lower()
        by_serial = ws.run(B5, "edgepack profile build/android --device adb:R58M123ABC --benchmark-binary "
                               "./benchmark_model", env=env, serial=pixel.serial)
        assert "Pixel 7" in by_serial.stdout
        assert sum("benchmark_model --graph=" in c for c in pixel.commands) == 2
        adb_server.attach(old)
        every = ws.run(B5, "edgepack profile build/android --device adb:all --benchmark-binary arm64-v8a=./bm64 "
                           "--benchmark-binary armeabi-v7a=./bm32", env=env)
        assert pixel.serial in every.stdout and old.serial in every.stdout and "max/min" in every.stdout
        assert any("benchmark_model --graph=" in c for c in old.commands)
        direct = ws.run(B5, "edgepack profile build/android --device adb-tcp:192.168.1.7:5555 --benchmark-binary "
                            "./benchmark_model", env=env, direct=wifi.serial)
        assert "Pixel 6a" in direct.stdout and any("benchmark_model --graph=" in c for c in wifi.commands)
        assert (tmp_path / "edgepack-key" / "adbkey").is_file()  # direct: edgepack's own key, which it created
    finally:
        for p in phones:
            p.stop()


@pytest.mark.slow
def test_readme_profile_serial(ws):
    from emulators.serial_board import SerialBoardEmulator

    ws.ensure("firmware")
    model = (ws.path / "build/firmware/model.tflite").read_bytes()
    clock = yaml.safe_load((ROOT / "device_profiles/nucleo-l4r5zi.yaml").read_text())["clock_hz"]
    with SerialBoardEmulator(model, clock_hz=clock, name="g_model") as board:
        p = ws.run(B5, "edgepack profile build/firmware --device serial:/dev/ttyACM0 --profile nucleo-l4r5zi",
                   pty=board.port, timeout=300)
    assert board.sessions >= 1 and "matches the TFLM host interpreter" in p.stdout + p.stderr


needs_qemu = pytest.mark.skipif(not (TFLM_ROOT and HAVE["arm-none-eabi-gcc"] and HAVE["qemu-system-arm"]),
                                reason="needs EDGEPACK_TFLM_ROOT (a TFLM tree), arm-none-eabi-gcc and "
                                       "qemu-system-arm (make system-deps; CI has them)")


@pytest.mark.slow
@needs_qemu
@pytest.mark.skipif(not HAVE["gdb-multiarch"], reason="gdb-multiarch absent (make system-deps; CI has it)")
def test_readme_profile_board(ws):
    ws.ensure("firmware")
    gdb, uart = free_port(), free_port()
    qemu = subprocess.Popen(["qemu-system-arm", "-M", "mps2-an386", "-icount", "shift=0", "-nographic",
                             "-monitor", "none", "-S", "-gdb", f"tcp:127.0.0.1:{gdb}",
                             "-serial", f"tcp:127.0.0.1:{uart},server=on,wait=off"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:  # until QEMU listens
            try:
                socket.create_connection(("127.0.0.1", uart), timeout=0.2).close()
                break
            except OSError:
                assert qemu.poll() is None and time.monotonic() < deadline, "qemu-system-arm did not start"
                time.sleep(0.05)
        p = ws.run(B5, "edgepack profile build/firmware --device board:nucleo-l4r5zi --port /dev/ttyACM0 "
                       "--tflm-root ~/tflite-micro", board=str(QEMU_BOARD), gdb=str(gdb), uart=str(uart),
                   tflm_root=TFLM_ROOT, timeout=1800)
    finally:
        qemu.kill()
        qemu.wait()
    assert "matches the TFLM host interpreter" in p.stdout + p.stderr and "cycles" in p.stdout.lower() + p.stderr


@pytest.mark.slow
@needs_qemu
def test_readme_profile_qemu(ws):
    ws.ensure("firmware")
    p = ws.run(B5, "edgepack profile build/firmware --device qemu:mps2-an386 --tflm-root ~/tflite-micro",
               tflm_root=TFLM_ROOT, timeout=1800)
    assert "instructions" in (p.stdout + p.stderr).lower() and "matches the TFLM host interpreter" in p.stdout


@pytest.mark.slow
@pytest.mark.skipif(not (TFLM_ROOT and HAVE["cmake"] and shutil.which("g++")),
                    reason="needs EDGEPACK_TFLM_ROOT (a TFLM tree), cmake and a host g++ (make system-deps)")
def test_firmware_readme_cmake(ws, tmp_path):
    """The firmware README's Build it lines: plain CMake with a TFLM target or a TFLM tree, and Zephyr (the tree
    build, minutes on 2 cores, comes last)."""
    from zephyr_shim import ZEPHYR_CMAKE_SHIM

    ws.ensure("firmware")
    fw = ws.path / "build/firmware"
    text = (fw / "README.md").read_text()
    top = re.search(r"the host TFLM gives top class (\d+)", text)
    assert top, "the firmware README no longer says which top class the example prints"
    src = "build/firmware/README.md"
    # -DEDGEPACK_TFLM_TARGET=<your TFLM target>
    opt = applied(row(src, "-DEDGEPACK_TFLM_TARGET=<your TFLM target>"))
    parent = tmp_path / "parent"
    parent.mkdir()
    tree = Path(TFLM_ROOT).resolve()
    deps = [base / dep for dep in ("flatbuffers/include", "gemmlowp", "ruy")  # where the CMakeLists looks too
            for base in (tree / "third_party", tree / "tensorflow/lite/micro/tools/make/downloads")
            if (base / dep).is_dir()]
    incs = " ".join(f'"{p}"' for p in [tree, *deps])
    (parent / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.13)\nproject(app C CXX)\n"
        f"add_library(tflm_headers INTERFACE)\ntarget_include_directories(tflm_headers INTERFACE {incs})\n"
        "target_compile_definitions(tflm_headers INTERFACE TF_LITE_STATIC_MEMORY)\n"
        "target_compile_features(tflm_headers INTERFACE cxx_std_17)\n"
        f'add_subdirectory("{fw}" fw)\n')
    b = tmp_path / "target"
    _ok(["cmake", "-S", parent, "-B", b, opt])
    _ok(["cmake", "--build", b, "--target", "g_model_inference", "g_model_harness"])
    # west build ... -- -DZEPHYR_EXTRA_MODULES=<this folder>
    module = yaml.safe_load((fw / "zephyr/module.yml").read_text())
    configs = re.findall(r"`(CONFIG_[A-Z0-9_]+)=y`", text)  # the prj.conf lines the README gives
    configs += re.findall(r"`(CONFIG_[A-Z0-9_]+)`, default y", text)  # Kconfig defaults it names
    assert {"CONFIG_EDGEPACK_G_MODEL", "CONFIG_EDGEPACK_G_MODEL_INFERENCE"} <= set(configs), configs
    app, b = tmp_path / "zephyr_app", tmp_path / "zephyr_b"
    app.mkdir()
    (app / "CMakeLists.txt").write_text(
        ZEPHYR_CMAKE_SHIM + "".join(f"set({c} y)\n" for c in configs)
        + "foreach(m ${ZEPHYR_EXTRA_MODULES})\n"
        + f'  add_subdirectory("${{m}}/{module["build"]["cmake"]}" module)\nendforeach()\n'
        + "add_executable(app app.c)\ntarget_link_libraries(app PRIVATE zephyr_interface)\n")
    (app / "app.c").write_text('#include "model_config.h"\n#include "model_data.h"\n#include "ep_inference.h"\n'
                               "int main(void) { return (int)EP_ARENA_SIZE == 0; }\n")
    cmd = applied(row(src, "west build ... -- -DZEPHYR_EXTRA_MODULES=<this folder>"), app=str(app), b=str(b),
                  fw=str(fw))
    _ok(shlex.split(cmd))
    _ok(["cmake", "--build", b, "--target", "app"])
    # -DEDGEPACK_TFLM_ROOT=<tflite-micro tree>: builds TFLM and the host example, which runs
    opt = applied(row(src, "-DEDGEPACK_TFLM_ROOT=<tflite-micro tree>"), tflm_root=TFLM_ROOT)
    b = tmp_path / "root"
    _ok(["cmake", "-S", fw, "-B", b, opt, "-DCMAKE_BUILD_TYPE=Release"])
    _ok(["cmake", "--build", b, "--target", "g_model_inference_example", "-j", str(os.cpu_count() or 2)])
    r = _ok([b / "g_model_inference_example"])
    assert f"top class {top.group(1)}" in r.stdout, r.stdout


def _ok(cmd: list, cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=3000)
    assert r.returncode == 0, f"{cmd[0]} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r
