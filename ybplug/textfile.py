"""Files a person writes for the CLI (``--record``, ``ybplug.toml``, a password file), as Windows
saves them.

Notepad on a Chinese Windows saves "ANSI" (GBK), "UTF-8" (with a BOM on older versions),
"UTF-8" without one, or "Unicode" (UTF-16 with a BOM): all are read here, one way for every
such file.  A file that is none of these, or JSON nested deeper than any record is, is refused
with one line naming the file and the rule (never a traceback).
"""

from __future__ import annotations

import codecs
import json
from typing import Any

from ybplug.errors import UsageError

__all__ = ["MAX_NESTING", "UnreadableFile", "decode_text", "loads_json"]

#: How deep a person's JSON may nest: a record is one flat object; a little room for what may come.
MAX_NESTING = 32

_ENCODINGS = "UTF-8 (with or without a BOM), UTF-16 with a BOM, or GBK/GB18030"


class UnreadableFile(UsageError):
    """A person's file is not text in an encoding ybplug reads, or nests too deeply."""


def decode_text(data: bytes, where: str) -> str:
    """``data`` as text: a BOM decides (UTF-8, UTF-16), else UTF-8, else GB18030 (a superset of
    GBK, what Notepad calls ANSI on a Chinese Windows).  ``where`` names the file in the error."""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise UnreadableFile(f"{where}: UTF-32 text; save it as {_ENCODINGS}")
    try:
        if data.startswith(codecs.BOM_UTF8):
            text = data[len(codecs.BOM_UTF8):].decode("utf-8")
        elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            text = data.decode("utf-16")  # the BOM says which byte order, and is dropped
        else:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                text = data.decode("gb18030")
    except UnicodeDecodeError:
        raise UnreadableFile(f"{where}: not text in {_ENCODINGS}") from None
    if "\x00" in text:  # UTF-16 without its BOM decodes as UTF-8 with a NUL every other byte
        raise UnreadableFile(f"{where}: holds NUL characters (UTF-16 without a BOM?); save it as {_ENCODINGS}")
    return text


def loads_json(text: str, where: str) -> Any:
    """JSON from a person's file; nesting deeper than :data:`MAX_NESTING` is refused before parsing
    (the parser would recurse once per level); an integer too long to convert is refused too."""
    if _nesting(text) > MAX_NESTING:
        raise UnreadableFile(f"{where}: JSON nested more than {MAX_NESTING} levels deep; a record is one flat object")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnreadableFile(f"{where}: not JSON ({exc.msg} at line {exc.lineno})") from None
    except ValueError:  # an integer past Python's 4,300-digit limit for text to int
        raise UnreadableFile(f"{where}: holds a number of more than 4,300 digits; no field is that long") from None


def _nesting(text: str) -> int:
    """The deepest nesting of ``[``/``{`` outside strings (a scan, no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest
