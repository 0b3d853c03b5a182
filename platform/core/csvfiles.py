"""What every CSV upload (bulk generation, recommendation data) says about a file it cannot use."""

from __future__ import annotations

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
