"""Errors told for a person: what went wrong in words, not the name of a Python exception class."""

from __future__ import annotations

import zipfile
from xml.etree.ElementTree import ParseError


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not match the expected layout; the message names the file or key.

    Defined here, away from torch, so the command line's error path can name it without importing torch."""


def describe(err: BaseException) -> str:
    """A short account of ``err`` for a reject row or a log line (one line, no exception class names)."""
    message = " ".join(str(err).split())[:200]
    if isinstance(err, RecursionError):
        return "nested too deeply to process"
    if isinstance(err, MemoryError):
        return "ran out of memory"
    if isinstance(err, ZeroDivisionError):
        return "a zero length or duration where the music needs one"
    if isinstance(err, (IndexError, KeyError)):
        return "a part the converter expected is missing" + (f" ({message})" if message else "")
    if isinstance(err, UnicodeError):
        return "text in an unreadable encoding"
    if isinstance(err, ParseError):
        return f"not well-formed XML ({message})"
    if isinstance(err, zipfile.BadZipFile):
        return "not a valid zip archive"
    if isinstance(err, (TypeError, AttributeError)):
        return "the converter cannot handle this notation" + (f" ({message})" if message else "")
    return message or "failed without details"
