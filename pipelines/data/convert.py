"""Score → MusicXML → standard ABC, the way NotaGen converts its data (xml2abc ``-d 8 -x``).

xml2abc and abc2xml (W. Vree's converters, shipped by abctoolkit) are driven in-process: starting a
Python interpreter per file would cost more than the conversion itself. Both keep module-level
state, so this is safe per process (the build runs one conversion at a time per worker process).
"""

from __future__ import annotations

import contextlib
import io
import types

from pipelines.data.sources import SourceItem, mxl_inner_score


class ConversionError(Exception):
    """A score could not be converted; the message is the reason written to rejected.jsonl."""


def _xml2abc_options(unit_length: int) -> types.SimpleNamespace:
    # The fields xml2abc's command line would set; -d (unit length) and -x (no line-break marks) as NotaGen.
    return types.SimpleNamespace(u=False, m=0, c=0, d=unit_length, n=0, b=0, o="", v=0, x=True, p=[], j=False,
                                 t=False, s=False, v1=False, ped=True, stm=False, i=False)


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
        raise ConversionError(f"xml2abc failed: {type(err).__name__}: {err}") from None
    text = buf.getvalue()
    if "occurred:" in log.getvalue() or "V:" not in text:
        detail = log.getvalue().strip().splitlines()
        raise ConversionError(f"xml2abc produced no music ({detail[-1] if detail else 'empty output'})")
    return text


def abc_to_musicxml(abc: str) -> bytes:
    """MusicXML for an ABC tune, by abc2xml (the converter NotaGen uses to go back)."""
    from abctoolkit import abc2xml

    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            docs = abc2xml.getXmlDocs(abc)
    except Exception as err:
        raise ConversionError(f"abc2xml failed: {type(err).__name__}: {err}") from None
    if not docs:
        raise ConversionError("abc2xml found no tune")
    return abc2xml.fixDoctype(docs[0]).encode("utf-8")


def _music21_to_musicxml(data: bytes, fmt: str) -> bytes:
    import music21
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            score = music21.converter.parseData(data.decode("utf-8"), format=fmt)
    except Exception as err:
        raise ConversionError(f"music21 cannot parse the {fmt} score: {type(err).__name__}: {err}") from None
    if not score.recurse().notesAndRests:
        raise ConversionError(f"the {fmt} score holds no notes")
    try:
        return GeneralObjectExporter(score).parse()
    except Exception as err:
        raise ConversionError(f"music21 cannot export MusicXML: {type(err).__name__}: {err}") from None


def to_musicxml(item: SourceItem) -> bytes:
    """MusicXML bytes for any supported source format."""
    if item.fmt == "musicxml":
        return item.data
    if item.fmt == "mxl":
        try:
            return mxl_inner_score(item.data)
        except Exception as err:  # BadZipFile, KeyError, XML errors: a truncated or corrupt archive
            raise ConversionError(f"truncated or corrupt .mxl archive: {type(err).__name__}: {err}") from None
    if item.fmt == "kern":
        return _music21_to_musicxml(item.data, "humdrum")
    if item.fmt == "abc":
        try:
            return abc_to_musicxml(item.data.decode("utf-8"))
        except ConversionError:
            # abc2xml is strict about some real-world folk ABC that music21 reads fine
            return _music21_to_musicxml(item.data, "abc")
    raise ConversionError(f"unsupported format {item.fmt}")


def to_standard_abc(item: SourceItem, unit_length: int = 8) -> str:
    """Standard ABC of a source item: MusicXML first (as NotaGen), then xml2abc."""
    return musicxml_to_abc(to_musicxml(item), unit_length)
