"""Any source score → MusicXML → standard ABC, the way NotaGen converts its data (xml2abc ``-d 8 -x``).

Humdrum and ABC that abc2xml rejects go through music21 to MusicXML first; the ABC ⇄ MusicXML converters
themselves are in base/abc/convert.py.
"""

from __future__ import annotations

import contextlib
import io

from base.abc.convert import ConversionError, abc_to_musicxml, musicxml_to_abc
from base.errors import describe
from pipelines.data.sources import SourceItem, mxl_inner_score

__all__ = ["ConversionError", "to_musicxml", "to_standard_abc"]


def _music21_to_musicxml(data: bytes, fmt: str) -> bytes:
    import music21
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            score = music21.converter.parseData(data.decode("utf-8"), format=fmt)
    except Exception as err:
        raise ConversionError(f"music21 cannot parse the {fmt} score: {describe(err)}") from None
    if not score.recurse().notesAndRests:
        raise ConversionError(f"the {fmt} score holds no notes")
    try:
        return GeneralObjectExporter(score).parse()
    except Exception as err:
        raise ConversionError(f"music21 cannot export MusicXML: {describe(err)}") from None


def to_musicxml(item: SourceItem) -> bytes:
    """MusicXML bytes for any supported source format."""
    if item.fmt == "musicxml":
        return item.data
    if item.fmt == "mxl":
        try:
            return mxl_inner_score(item.data)
        except Exception as err:  # BadZipFile, KeyError, XML errors: a truncated or corrupt archive
            raise ConversionError(f"truncated or corrupt .mxl archive: {describe(err)}") from None
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
