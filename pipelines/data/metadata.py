"""Prompt metadata (period, composer, instrumentation) of a piece.

The composer comes from the source (the score's composer field, or the collection it belongs to);
the period from a table of composers kept here; the instrumentation from the names and number of the
parts. Users correct any of the three with a CSV/JSON override file.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import re
from dataclasses import dataclass
from pathlib import Path

from unidecode import unidecode

from base.typed_config import ConfigError

PERIODS = ("Medieval", "Renaissance", "Baroque", "Classical", "Romantic", "Modern", "Folk", "Unknown")

# canonical name, period, lower-case patterns found in composer fields
COMPOSERS: list[tuple[str, str, tuple[str, ...]]] = [
    ("Bach, Carl Philipp Emanuel", "Classical", ("c.p.e. bach", "carl philipp emanuel", "c. p. e. bach")),
    ("Bach, Johann Sebastian", "Baroque", ("bach",)),
    ("Palestrina, Giovanni Pierluigi da", "Renaissance", ("palestrina",)),
    ("Monteverdi, Claudio", "Renaissance", ("monteverdi",)),
    ("Josquin des Prez", "Renaissance", ("josquin",)),
    ("Lusitano, Vicente", "Renaissance", ("lusitano",)),
    ("Ciconia, Johannes", "Medieval", ("ciconia",)),
    ("Landini, Francesco", "Medieval", ("landini",)),
    ("Jacopo da Bologna", "Medieval", ("jacopo da bologna",)),
    ("Vitry, Philippe de", "Medieval", ("vitry",)),
    ("Machaut, Guillaume de", "Medieval", ("machaut",)),
    ("Lorenzo da Firenze", "Medieval", ("lorenzo",)),
    ("Gherardello da Firenze", "Medieval", ("gherardello",)),
    ("Handel, George Frideric", "Baroque", ("handel", "haendel")),
    ("Corelli, Arcangelo", "Baroque", ("corelli",)),
    ("Vivaldi, Antonio", "Baroque", ("vivaldi",)),
    ("Haydn, Joseph", "Classical", ("haydn",)),
    ("Mozart, Wolfgang Amadeus", "Classical", ("mozart",)),
    ("Beethoven, Ludwig van", "Classical", ("beethoven",)),
    ("Schubert, Franz", "Romantic", ("schubert",)),
    ("Schumann, Clara", "Romantic", ("clara schumann", "schumann, clara", "clara wieck")),
    ("Schumann, Robert", "Romantic", ("schumann",)),
    ("Chopin, Frederic", "Romantic", ("chopin",)),
    ("Weber, Carl Maria von", "Romantic", ("carl maria von weber", "weber, carl", "c. m. von weber")),
    ("Verdi, Giuseppe", "Romantic", ("verdi",)),
    ("Brahms, Johannes", "Romantic", ("brahms",)),
    ("Mendelssohn, Felix", "Romantic", ("mendelssohn",)),
    ("Joplin, Scott", "Modern", ("joplin",)),
    ("Webern, Anton", "Modern", ("webern",)),
    ("Schoenberg, Arnold", "Modern", ("schoenberg", "schonberg")),
    ("Beach, Amy", "Modern", ("amy beach",)),
]
PERIOD_OF = {name: period for name, period, _ in COMPOSERS}

# What a music21 collection tells when the score itself names no composer (or for folk, always).
COLLECTION_COMPOSER = {
    "bach": "Bach, Johann Sebastian",
    "cpebach": "Bach, Carl Philipp Emanuel",
    "palestrina": "Palestrina, Giovanni Pierluigi da",
    "monteverdi": "Monteverdi, Claudio",
    "josquin": "Josquin des Prez",
    "lusitano": "Lusitano, Vicente",
    "ciconia": "Ciconia, Johannes",
    "handel": "Handel, George Frideric",
    "corelli": "Corelli, Arcangelo",
    "haydn": "Haydn, Joseph",
    "mozart": "Mozart, Wolfgang Amadeus",
    "beethoven": "Beethoven, Ludwig van",
    "schubert": "Schubert, Franz",
    "schumann_robert": "Schumann, Robert",
    "schumann_clara": "Schumann, Clara",
    "chopin": "Chopin, Frederic",
    "weber": "Weber, Carl Maria von",
    "verdi": "Verdi, Giuseppe",
    "joplin": "Joplin, Scott",
    "webern": "Webern, Anton",
    "schoenberg": "Schoenberg, Arnold",
    "beach": "Beach, Amy",
}
# Folk collections: the tradition is the "composer" of a prompt; the score's C: names a transcriber.
FOLK_COLLECTIONS = {
    "oneills1850": "Traditional, Irish",
    "airdsAirs": "Traditional, Scottish",
    "ryansMammoth": "Traditional, American",
    "miscFolk": "Traditional, American",
    "essenFolksong": "Traditional, European",
    "nottingham-dataset": "Traditional, English",
}
COLLECTION_PERIOD = {"trecento": "Medieval", "luca": "Medieval", "ciconia": "Medieval"}
VOCAL_COLLECTIONS = {"palestrina", "monteverdi", "trecento", "josquin", "ciconia", "luca", "lusitano"}

_VOCAL = re.compile(
    r"\b(soprano|sopran|alto|altus|contralto|tenor|tenore|contratenor|contra|bass|basso|"
    r"bassus|baritone?|mezzo|cantus|quintus|sextus|septimus|superius|triplum|motetus|"
    r"duplum|voice|voce|vox|canto|chor|choir|chorus|singstimme|s|a|t|b)\b\.?"
)
_KEYBOARD = re.compile(r"(piano|klavier|clavier|harpsichord|cembalo|organ|organo|keyboard|clavichord|pfte)")
_STRING = re.compile(r"(violin|violino|viola|violoncell|cello|contrabass|double bass|kontrabass|basso continuo)")
_INSTRUMENT = re.compile(
    r"(flute|flauto|oboe|clarinet|horn|corno|trumpet|tromba|bassoon|fagott|trombone|"
    r"guitar|lute|harp|timpani|recorder)"
)


@dataclass(frozen=True)
class Prompt:
    period: str
    composer: str
    instrumentation: str

    def key(self) -> str:
        """NotaGen's prompt name: ``period_composer_instrumentation``."""
        return f"{self.period}_{self.composer}_{self.instrumentation}"


def canonical_composer(raw: str | None) -> str | None:
    """The table's name for a composer field, or the cleaned field when the table doesn't know it."""
    if not raw:
        return None
    text = unidecode(raw).strip()
    text = re.sub(r"\\\w+", "", text)  # LaTeX-ish marks such as \footnotemark
    low = text.lower()
    for name, _, patterns in COMPOSERS:
        if any(p in low for p in patterns):
            return name
    if re.match(r"(anon|unknown|traditional|trad\b)", low):  # "anon", "anonymous", "Anonyous" (sic)
        return None
    # drop dates, "(opus dubium)"-style remarks and manuscript sigla ("Lorenzo F-Pn" → "Lorenzo")
    text = re.sub(r"\(.*?\)|,?\s*\d{3,4}.*$|\s+[A-Z]{1,2}-[A-Z][A-Za-z]*\b.*$", "", text).strip(" ,.;")
    return text or None


def _part_kind(name: str) -> str:
    low = unidecode(name).lower()
    if _KEYBOARD.search(low):
        return "keyboard"
    if _STRING.search(low):
        return "string"
    if _INSTRUMENT.search(low):
        return "instrument"
    if _VOCAL.search(low):
        return "vocal"
    return "unknown"


def instrumentation_of(part_names: list[str], n_voices: int, collection: str) -> str:
    """Instrumentation label from part names (one per part, '' when unnamed) and the voice count."""
    kinds = [_part_kind(n) for n in part_names if n]
    known = [k for k in kinds if k != "unknown"]
    if not known:
        if collection in FOLK_COLLECTIONS or n_voices == 1:
            return "Solo melody"
        if collection in VOCAL_COLLECTIONS or collection == "bach":
            return "Chorus"
        return "Ensemble"
    if all(k == "keyboard" for k in known):
        return "Keyboard"
    n_vocal, n_key = known.count("vocal"), known.count("keyboard")
    if n_vocal and n_key and n_vocal + n_key == len(known):
        return "Voice and Keyboard"
    if n_vocal == len(known):
        return "Chorus" if n_vocal > 1 else "Solo melody"
    if n_vocal:
        return "Voices and Instruments"
    if known == ["string"] * len(known):
        names = " ".join(unidecode(n).lower() for n in part_names)
        if len(known) == 4 and names.count("viola") == 1 and ("cello" in names or "violoncell" in names):
            return "String Quartet"
        return "Strings"
    if len(known) == 1:
        return "Solo instrument"
    return "Chamber" if len(known) <= 8 else "Orchestral"


def infer_prompt(composer_field: str | None, part_names: list[str], n_voices: int, collection: str) -> Prompt:
    """Period, composer and instrumentation of a piece from what its source tells."""
    if collection in FOLK_COLLECTIONS:
        composer = FOLK_COLLECTIONS[collection]
        return Prompt("Folk", composer, instrumentation_of(part_names, n_voices, collection))
    # A collection named after its composer is authoritative: score composer fields there often name
    # the poet (Monteverdi's madrigals credit Guarini) or hold OCR noise.
    composer = COLLECTION_COMPOSER.get(collection) or canonical_composer(composer_field) or "Anonymous"
    period = PERIOD_OF.get(composer) or COLLECTION_PERIOD.get(collection, "Unknown")
    return Prompt(period, composer, instrumentation_of(part_names, n_voices, collection))


@dataclass
class MetadataOverrides:
    """User corrections: piece id, source path, or a glob over either → fields to replace."""

    rules: list[tuple[str, dict[str, str]]]

    FIELDS = ("period", "composer", "instrumentation")

    @classmethod
    def empty(cls) -> MetadataOverrides:
        return cls([])

    @classmethod
    def load(cls, path: str | Path) -> MetadataOverrides:
        path = Path(path)
        name = "data.metadata_overrides"
        if not path.is_file():
            raise ConfigError(f"{name}: file {path} not found")
        rows: list[dict] = []
        try:
            if path.suffix.lower() == ".json":
                data = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(data, dict):
                    rows = [{"match": k, **v} for k, v in data.items()]
                elif isinstance(data, list):
                    rows = data
                else:
                    raise ConfigError(f"{name}: {path} must hold an object or a list of objects")
            elif path.suffix.lower() == ".csv":
                with path.open(newline="", encoding="utf-8") as f:
                    rows = list(csv.DictReader(f))
            else:
                raise ConfigError(f"{name}: {path} must be a .csv or .json file")
        except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as err:
            raise ConfigError(f"{name}: cannot read {path}: {err}") from None
        rules = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or not row.get("match"):
                raise ConfigError(f"{name}: row {i + 1} of {path} has no 'match' (a piece id, path or glob)")
            unknown = set(row) - {"match", *cls.FIELDS}
            if unknown:
                raise ConfigError(
                    f"{name}: row {i + 1} of {path} has unknown columns {sorted(unknown)}; "
                    f"use match, {', '.join(cls.FIELDS)}"
                )
            fields = {k: str(row[k]).strip() for k in cls.FIELDS if row.get(k) not in (None, "")}
            rules.append((str(row["match"]), fields))
        return cls(rules)

    def apply(self, prompt: Prompt, piece_id: str, path: str) -> Prompt:
        fields = {"period": prompt.period, "composer": prompt.composer, "instrumentation": prompt.instrumentation}
        for pattern, new in self.rules:  # later rules win, so a file can go from general to specific
            if (
                pattern in (piece_id, path)
                or fnmatch.fnmatchcase(piece_id, pattern)
                or fnmatch.fnmatchcase(path, pattern)
            ):
                fields.update(new)
        return Prompt(**fields)


def header_facts(standard_abc: str) -> dict:
    """Title, composer field and part names read from xml2abc's standard ABC header."""
    title = composer = None
    parts: list[str] = []
    n_voices = 0
    for line in standard_abc.splitlines():
        if line.startswith("T:") and title is None:
            title = line[2:].strip()
            if title in ("Music21 Fragment", "Title", "Untitled"):  # converters' placeholders
                title = None
        elif line.startswith("C:") and composer is None:
            composer = line[2:].strip()
        elif re.match(r"V:\S+\s+\S", line):  # a voice declaration; the bare "V:1" opens the music
            n_voices += 1
            m = re.search(r'\bnm="([^"]*)"', line)
            parts.append(m.group(1) if m else "")
    return {"title": title, "composer_field": composer, "part_names": parts, "n_voices": max(n_voices, 1)}
