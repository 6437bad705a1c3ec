"""Model bytes -> a C/C++ array that lands in flash: model_data.h / model_data.cc.

The array is ``alignas(16) const unsigned char NAME[]`` with an ``extern`` declaration
in the header (without it a C++ ``const`` at namespace scope has internal linkage),
plus ``NAME_len``. Both have C linkage so C and C++ sources can use them.

Example::

    ident = c_identifier("mnist-cnn.v2")         # 'g_mnist_cnn_v2'
    check_identifier("g_model")                  # raises UsageError if not a usable C name
    header, source = model_array_files(data, ident, {"model": "mnist.h5", "sha256": "..."})
    c_string('say "hi"\n')                     # '"say \\"hi\\"\\n"' (a C string literal)
    comment_text("evil */ x\ny")               # 'evil * / x y' (safe inside /* ... */)

Every user string that reaches generated C goes through ``c_string`` (string literals)
or ``comment_text`` (comments); identifiers through ``check_identifier``/``c_identifier``.
"""

from __future__ import annotations

import re
from typing import Mapping

from ..errors import UsageError
from ..fsutil import sha256_bytes

# C11 and C++17 keywords and names a model array must not shadow.
_RESERVED = frozenset("""
alignas alignof and and_eq asm auto bitand bitor bool break case catch char char16_t char32_t char8_t class
compl concept const const_cast consteval constexpr constinit continue co_await co_return co_yield decltype
default delete do double dynamic_cast else enum explicit export extern false float for friend goto if inline
int long mutable namespace new noexcept not not_eq nullptr operator or or_eq private protected public register
reinterpret_cast requires restrict return short signed sizeof static static_assert static_cast struct switch
template this thread_local throw true try typedef typeid typename union unsigned using virtual void volatile
wchar_t while xor xor_eq _Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn _Static_assert
_Thread_local main NULL errno assert
""".split())
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_IDENT = 63  # C99 guarantees 63 significant characters for internal identifiers
BYTES_PER_LINE = 12


def check_identifier(name: str) -> str:
    """Return ``name`` if it is a usable C/C++ identifier, else raise UsageError saying why."""
    why = None
    if not _IDENT.match(name or ""):
        why = "use letters, digits and '_' only, not starting with a digit"
    elif name in _RESERVED:
        why = "it is a C/C++ keyword or a standard name"
    elif name.startswith("__") or (name[0] == "_" and len(name) > 1 and name[1].isupper()):
        why = "names starting with '__' or '_' + capital letter are reserved for the compiler"
    elif len(name) > MAX_IDENT:
        why = f"keep it at most {MAX_IDENT} characters"
    if why:
        raise UsageError(f"--array-name '{name}' is not a valid C identifier: {why} (e.g. g_model)")
    return name


def c_identifier(model_name: str, prefix: str = "g_") -> str:
    """A safe C identifier derived from a model name: ``prefix`` + lower-case, '_' for other bytes.

    >>> c_identifier("MNIST cnn-v2.h5")
    'g_mnist_cnn_v2_h5'
    """
    stem = re.sub(r"[^a-z0-9]+", "_", model_name.lower()).strip("_") or "model"
    name = (prefix + stem)[:MAX_IDENT].rstrip("_")
    if not _IDENT.match(name) or name in _RESERVED:
        name = "g_model"
    return check_identifier(name)


def c_string(text: str) -> str:
    """``text`` as a C/C++ string literal, quotes included, in plain ASCII.

    Quotes, backslashes and control bytes are escaped; non-ASCII text is written as its
    UTF-8 bytes in octal escapes (octal, not hex: a hex escape would swallow a following
    hex digit); ``?`` is escaped so no trigraph can form. The literal's bytes are the
    UTF-8 encoding of ``text``. Example: ``c_string('a"b')`` is ``"a\\"b"`` in C.
    """
    named = {0x22: '\\"', 0x5C: "\\\\", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x3F: "\\?"}
    out = []
    for b in str(text).encode("utf-8"):
        if b in named:
            out.append(named[b])
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def comment_text(text: object, limit: int = 200) -> str:
    """One line of printable ASCII that is safe inside a ``/* */`` or ``//`` comment.

    Line breaks (any Unicode line separator) and control characters become spaces,
    ``*/``, ``/*`` and ``??`` (trigraphs) are broken up, a trailing backslash (a line
    splice in ``//`` comments) is dropped, non-ASCII characters become ``U+XXXX``, and the
    result is capped at ``limit`` characters.

    >>> comment_text("a */ b" + chr(10) + "é")
    'a * / b U+00E9'
    """
    s = " ".join(str(text).splitlines())
    s = "".join(c if 0x20 <= ord(c) < 0x7F else " " if (c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F)
                else f"U+{ord(c):04X}" for c in s)
    while "*/" in s or "/*" in s or "??" in s:
        s = s.replace("*/", "* /").replace("/*", "/ *").replace("??", "? ?")
    if len(s) > limit:
        s = s[: limit - 3] + "..."
    return s.rstrip("\\ ")


def _hex_lines(data: bytes) -> str:
    lines = []
    for i in range(0, len(data), BYTES_PER_LINE):
        chunk = data[i : i + BYTES_PER_LINE]
        lines.append("    " + ", ".join(f"0x{b:02x}" for b in chunk) + ",")
    return "\n".join(lines)


def _comment(provenance: Mapping[str, object]) -> str:
    rows = [f" * {comment_text(k, 60)}: {comment_text(v)}" for k, v in provenance.items()]
    return "\n".join(rows)


def model_array_files(data: bytes, ident: str, provenance: Mapping[str, object],
                      header_name: str = "model_data.h") -> tuple[str, str]:
    """The text of ``model_data.h`` and ``model_data.cc`` for ``data`` under name ``ident``.

    ``provenance`` rows (e.g. recipe, sizes) go into the header comment after the
    SHA-256 and size, which are always present. Output is deterministic.
    """
    check_identifier(ident)
    if not data:
        raise UsageError("the model is empty; nothing to write as a C array")
    sha = sha256_bytes(data)
    guard = f"EDGEPACK_{ident.upper()}_MODEL_DATA_H_"
    info = {"sha256": sha, "size_bytes": len(data), **provenance}
    header = f"""/* Generated by edgepack; do not edit.
 * TFLite flatbuffer as a C array for TensorFlow Lite Micro.
{_comment(info)}
 */
#ifndef {guard}
#define {guard}

#ifdef __cplusplus
extern "C" {{
#endif

/* The model, 16-byte aligned, in read-only memory (flash). */
extern const unsigned char {ident}[];
/* Its length in bytes ({len(data)}). */
extern const unsigned int {ident}_len;

#ifdef __cplusplus
}}  /* extern "C" */
#endif

#define {ident.upper()}_LEN {len(data)}u

#endif  /* {guard} */
"""
    source = f"""/* Generated by edgepack; do not edit. sha256: {sha} */
#include "{header_name}"

/* alignas(16): TFLM reads the flatbuffer in place. 'const' with the extern
 * declaration above keeps it in .rodata (flash), not in RAM. */
alignas(16) const unsigned char {ident}[] = {{
{_hex_lines(data)}
}};

const unsigned int {ident}_len = {len(data)}u;
"""
    return header, source
