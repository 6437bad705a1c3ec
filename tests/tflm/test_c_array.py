"""C array writer: identifiers, exact bytes, extern linkage, and a real host compile + run."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edgepack.tflm.c_array import c_identifier, c_string, check_identifier, comment_text, model_array_files
from edgepack.errors import UsageError
from locations import GOLDEN



@pytest.mark.parametrize("name, ident", [
    ("model", "g_model"), ("MNIST cnn-v2.h5", "g_mnist_cnn_v2_h5"), ("123abc", "g_123abc"),
    ("int", "g_int"), ("kws_ref_model", "g_kws_ref_model"), ("ünïcode", "g_n_code"), ("---", "g_model"),
])
def test_identifier_derivation(name, ident):
    assert c_identifier(name) == ident
    assert check_identifier(ident) == ident


def test_derived_identifier_is_capped_and_valid():
    ident = c_identifier("x" * 200)
    assert len(ident) <= 63 and check_identifier(ident) == ident


@pytest.mark.parametrize("bad", ["1abc", "my-model", "int", "class", "__x", "_Model", "a b", "", "x" * 64, "é"])
def test_invalid_user_identifiers_are_rejected(bad):
    with pytest.raises(UsageError, match="not a valid C identifier"):
        check_identifier(bad)


def _array_bytes(source: str) -> bytes:
    body = source[source.index("{") + 1 : source.index("};")]
    return bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body))


def test_array_holds_the_exact_bytes_and_declares_length():
    data = (GOLDEN / "tiny_int8.tflite").read_bytes()
    header, source = model_array_files(data, "g_tiny", {"model": "tiny"})
    assert _array_bytes(source) == data
    assert f"const unsigned int g_tiny_len = {len(data)}u;" in source
    assert "alignas(16) const unsigned char g_tiny[]" in source
    assert "extern const unsigned char g_tiny[];" in header and "extern const unsigned int g_tiny_len;" in header
    assert f"#define G_TINY_LEN {len(data)}u" in header
    import hashlib
    assert hashlib.sha256(data).hexdigest() in header
    assert model_array_files(data, "g_tiny", {"model": "tiny"}) == (header, source)  # deterministic


def test_provenance_comment_cannot_close_the_comment():
    header, _ = model_array_files(b"\x01\x02", "g_m", {"recipe": "evil */ int x;"})
    comment = header[: header.index("*/\n#ifndef")]
    assert "*/" not in comment[2:]


@pytest.mark.parametrize("text", ["plain", 'q"uote', "back\\slash", "new\nline", "tri??/graph", "é☃", "\x00\x7f", "0\x01" + "7"])
def test_c_string_is_ascii_and_keeps_the_bytes(text):
    lit = c_string(text)
    assert lit.isascii() and lit.startswith('"') and lit.endswith('"') and "\n" not in lit and "??" not in lit
    # decode the literal the way a C compiler does (simple and octal escapes) and compare bytes
    body, out, i = lit[1:-1], bytearray(), 0
    while i < len(body):
        if body[i] == "\\":
            if body[i + 1] in "01234567":
                out.append(int(body[i + 1 : i + 4], 8))
                i += 4
                continue
            out += {"n": b"\n", "r": b"\r", "t": b"\t"}.get(body[i + 1], body[i + 1].encode())
            i += 2
        else:
            assert body[i] != '"'
            out += body[i].encode()
            i += 1
    assert bytes(out) == text.encode("utf-8")


@pytest.mark.parametrize("text", ["a */ b", "x\ny\rz\u2028w", "tail\\", "/* open", "??/", "é" * 300])
def test_comment_text_is_one_safe_line(text):
    c = comment_text(text)
    assert c.isascii() and c.isprintable() and "*/" not in c and "/*" not in c and "??" not in c
    assert not c.endswith("\\") and len(c) <= 200


def test_empty_model_is_refused():
    with pytest.raises(UsageError):
        model_array_files(b"", "g_model", {})


@pytest.mark.skipif(shutil.which("g++") is None, reason="no host g++ to compile the generated array")
def test_host_compiled_array_round_trips(tmp_path: Path):
    """Compile model_data.cc with a real C++ compiler, link from C, dump the bytes back."""
    data = (GOLDEN / "tiny_int8.tflite").read_bytes()
    header, source = model_array_files(data, "g_tiny", {})
    (tmp_path / "model_data.h").write_text(header)
    (tmp_path / "model_data.cc").write_text(source)
    (tmp_path / "dump.c").write_text(
        '#include <stdio.h>\n#include <stdint.h>\n#include "model_data.h"\n'
        "int main(void) { if (((uintptr_t)g_tiny) % 16u) return 3;\n"
        "  fwrite(g_tiny, 1, g_tiny_len, stdout); return 0; }\n")
    subprocess.run(["g++", "-std=c++11", "-Wall", "-Werror", "-c", "model_data.cc"], cwd=tmp_path, check=True)
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Werror", "-c", "dump.c"], cwd=tmp_path, check=True)
    subprocess.run(["gcc", "dump.o", "model_data.o", "-o", "dump"], cwd=tmp_path, check=True)
    out = subprocess.run([str(tmp_path / "dump")], capture_output=True, check=True).stdout
    assert out == data
