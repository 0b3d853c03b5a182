"""CSV files in and out: what every upload (bulk generation, recommendation data) says about a file
it cannot use, and cells every export writes so that a spreadsheet will not run them."""

from __future__ import annotations

from typing import Any

from core.errors import InvalidInput


def file_error(message: str, code: str) -> InvalidInput:
    """A 400 about the whole file, reported under the form's ``file`` field."""
    return InvalidInput(message, code=code, fields={"file": [message]})


def decode_csv(data: bytes) -> str:
    """The upload as text: UTF-8, with or without the byte order mark Excel writes."""
    try:
        return data.decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a byte order mark
    except UnicodeDecodeError as exc:
        raise file_error(
            f"The file is not UTF-8 text (byte 0x{data[exc.start]:02x} at position {exc.start}). "
            'Save it as "CSV UTF-8" and upload it again.',
            "invalid_encoding",
        ) from None


#: A cell starting with one of these is a formula to a spreadsheet (CSV injection); see OWASP.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """Text a spreadsheet will not run as a formula: a leading quote, as OWASP advises."""
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value
