"""tests/refusal.py's assert_refused fails on each way a refusal can be unclean."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from cli_result import CliResult
from refusal import assert_refused, snapshot

GOOD = CliResult(1, "", "error: data.npz: 3 of 6 labels are outside the model's 3 classes\n")


def test_a_clean_refusal_passes_and_returns_its_line(tmp_path):
    assert assert_refused(GOOD, out=tmp_path / "o", match=["data.npz", re.compile(r"\d of \d labels")]) == \
        GOOD.err.strip()
    r = subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('error: bad\\n'); sys.exit(2)"],
                       capture_output=True)  # bytes
    assert assert_refused(r, code=2, match="bad") == "error: bad"


@pytest.mark.parametrize("result, words", [
    (CliResult(0, "", ""), "exit code 0"),
    (CliResult(2, "", "error: x\n"), "exit code 2"),
    (CliResult(1, "", "load model 0/1\nerror: x\n"), "one line"),
    (CliResult(1, "", "Traceback (most recent call last):\n"), "traceback"),
    (CliResult(1, "Traceback (most recent call last): ...", "error: x\n"), "traceback"),
    (CliResult(1, "", "x went wrong\n"), "error: "),
])
def test_an_unclean_refusal_fails(result, words):
    with pytest.raises(AssertionError, match=words):
        assert_refused(result)


def test_the_message_must_match():
    with pytest.raises(AssertionError, match="'labelz' not in the error line"):
        assert_refused(GOOD, match=["data.npz", "labelz"])


def test_anything_written_to_out_fails(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    with pytest.raises(AssertionError, match="written by a refused run"):
        assert_refused(GOOD, out=out)
    out.rmdir()
    (tmp_path / ".o.tmp-abc").mkdir()
    with pytest.raises(AssertionError, match="staging left"):
        assert_refused(GOOD, out=out)


def test_a_previous_out_must_stay_byte_identical(tmp_path):
    out = tmp_path / "o"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "a.txt").write_text("previous")
    before = snapshot(out)
    assert_refused(GOOD, out=before)
    (out / "sub" / "a.txt").write_text("changed!")
    with pytest.raises(AssertionError, match=r"changed \['sub/a.txt'\]"):
        assert_refused(GOOD, out=before)
    (out / "sub" / "a.txt").write_text("previous")
    (out / "new").mkdir()
    with pytest.raises(AssertionError, match=r"added \['new'\]"):
        assert_refused(GOOD, out=before)
    f = tmp_path / "p.json"
    f.write_text("{}")
    before = snapshot(f)
    f.write_text("{} ")
    with pytest.raises(AssertionError, match="changed"):
        assert_refused(GOOD, out=before)
