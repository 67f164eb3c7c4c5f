"""ABC ⇄ MusicXML with W. Vree's converters (shipped by abctoolkit), as NotaGen converts its data.

xml2abc (options ``-d 8 -x``) writes standard (voice-block) ABC; abc2xml goes back. Both are driven
in-process: starting an interpreter per file would cost more than the conversion itself. Both keep
module-level state, so this is safe per process, one conversion at a time.
"""

from __future__ import annotations

import contextlib
import io
import re
import types

from base.errors import describe


class ConversionError(Exception):
    """A score could not be converted; the message is the reason written for a person."""


def _xml2abc_options(unit_length: int) -> types.SimpleNamespace:
    # The fields xml2abc's command line would set; -d (unit length) and -x (no line-break marks) as NotaGen.
    return types.SimpleNamespace(
        u=False,
        m=0,
        c=0,
        d=unit_length,
        n=0,
        b=0,
        o="",
        v=0,
        x=True,
        p=[],
        j=False,
        t=False,
        s=False,
        v1=False,
        ped=True,
        stm=False,
        i=False,
    )


def musicxml_to_abc(xml: bytes, unit_length: int = 8) -> str:
    """Standard (voice-block) ABC for a MusicXML document."""
    from abctoolkit import xml2abc

    opts = _xml2abc_options(unit_length)
    out = xml2abc.ABCoutput("piece.abc", "", 0, opts)
    buf = io.StringIO()
    out.outfile = buf
    xml2abc.abcOut = out  # xml2abc's parser writes to this module global
    log = io.StringIO()
    try:
        with contextlib.redirect_stderr(log), contextlib.redirect_stdout(io.StringIO()):
            xml2abc.Parser(opts).parse(io.BytesIO(xml))
    except Exception as err:  # xml2abc raises bare Exceptions of many kinds on malformed input
        raise ConversionError(f"xml2abc failed: {describe(err)}") from None
    text = buf.getvalue()
    if "occurred:" in log.getvalue() or "V:" not in text:
        detail = log.getvalue().strip().splitlines()
        raise ConversionError(f"xml2abc produced no music ({detail[-1] if detail else 'empty output'})")
    return text


# Metre and unit-length fields a score can hold: a numerator up to 64 (a bar of 64 beats) over a power of two.
# A generated M:999999999/1 makes abc2xml and music21 fill a bar that long with rests: minutes and gigabytes
# for one sample (found by fuzzing), so such a field is refused before any converter sees it.
_FIELD = re.compile(r"(?:^|\[)([ML]):([^\]\n]*)", re.MULTILINE)
_FRACTION = re.compile(r"\s*\(?(\d+(?:\s*\+\s*\d+)*)\)?\s*/\s*(\d+)\s*$")
POWERS_OF_TWO = {2**i for i in range(10)}  # up to 1/512


def absurd_field(abc: str) -> str | None:
    """The first M: or L: field (header or inline) no score can hold, or None."""
    for field_name, value in _FIELD.findall(abc):
        m = _FRACTION.match(value)
        if not m:
            continue  # C, C|, none, or text abc2xml reads or ignores on its own
        numerator = sum(int(x) for x in m.group(1).replace(" ", "").split("+"))
        denominator = int(m.group(2))
        limit = 64 if field_name == "M" else 16
        if numerator > limit or denominator not in POWERS_OF_TWO:
            return f"{field_name}:{value.strip()[:40]}"
    return None


def abc_to_musicxml(abc: str) -> bytes:
    """MusicXML for an ABC tune, by abc2xml (the converter NotaGen uses to go back); a metre or unit length no
    score can hold is refused first (``absurd_field``)."""
    from abctoolkit import abc2xml

    absurd = absurd_field(abc)
    if absurd:
        raise ConversionError(f"an impossible metre or note unit ({absurd}): no score holds a bar that long")

    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            docs = abc2xml.getXmlDocs(abc)
    except Exception as err:
        raise ConversionError(f"abc2xml failed: {describe(err)}") from None
    if not docs:
        raise ConversionError("abc2xml found no tune")
    return abc2xml.fixDoctype(docs[0]).encode("utf-8")
