"""Text from callers: what Postgres can store, and how to quote it back in a message."""

from __future__ import annotations

import re

#: An unpaired UTF-16 surrogate: JSON can carry one (``"\ud800"``), UTF-8 and Postgres cannot.
_SURROGATE = re.compile("[\ud800-\udfff]")


def storable_text(value: str) -> bool:
    """Whether Postgres can store the text: no NUL character and no unpaired UTF-16 surrogate."""
    return "\x00" not in value and _SURROGATE.search(value) is None


def printable(value: object) -> str:
    """A value safe to echo back in an error (the JSON renderer cannot encode a lone surrogate)."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def shown(name: str) -> str:
    """A name from the input (a column, a value) quoted for a message, short and printable."""
    return repr(name[:40].encode("utf-8", "backslashreplace").decode("utf-8"))


def clean_filename(filename: str) -> str:
    """An uploaded file's name as stored and shown: printable, storable, at most 255 characters."""
    return "".join(ch for ch in filename if ch.isprintable() and storable_text(ch))[:255]
