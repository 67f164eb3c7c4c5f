"""Settings of ``clampdpo data build``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from base.typed_config import check, option

# Collections of music21's bundled corpus that hold scores (not analyses). Essen's 8,500 folk songs
# are left out of the default so that folk melodies don't swamp the multi-voice classical prompts;
# josquin is left out because its files hold each voice as a separate barless tune.
DEFAULT_COLLECTIONS = [
    "bach",
    "palestrina",
    "monteverdi",
    "trecento",
    "ciconia",
    "luca",
    "lusitano",
    "handel",
    "corelli",
    "cpebach",
    "haydn",
    "mozart",
    "beethoven",
    "schubert",
    "schumann_robert",
    "schumann_clara",
    "chopin",
    "weber",
    "verdi",
    "oneills1850",
    "ryansMammoth",
    "airdsAirs",
    "miscFolk",
]
DEFAULT_COLLECTION_LIMITS = {"oneills1850": 500, "ryansMammoth": 500, "airdsAirs": 300}

SOURCE_MUSIC21 = "music21"


@dataclass
class DataConfig:
    """How the corpus is built; every field can be set in YAML under ``data:`` or with ``--set``."""

    sources: list[str] = option(
        default_factory=lambda: [SOURCE_MUSIC21],
        help="Where scores come from: 'music21' (the bundled corpus) and/or folders of "
        ".xml/.mxl/.musicxml/.krn/.abc files.",
    )
    collections: list[str] = option(
        default_factory=lambda: list(DEFAULT_COLLECTIONS),
        help="music21 corpus collections (sub-folders of music21/corpus) read when 'music21' is a source.",
    )
    collection_limits: dict[str, int] = option(
        default_factory=lambda: dict(DEFAULT_COLLECTION_LIMITS),
        help="At most this many pieces from a collection (a seeded sample); collections not named are read whole.",
    )
    limit: int = option(0, help="At most this many pieces in all (a seeded sample); 0 means no limit.")
    out_dir: str = option("corpus", help="Output folder of the corpus.")
    augment_keys: bool = option(
        False, help="Also write every training piece transposed to NotaGen's 15 keys (eval pieces stay in their key)."
    )
    eval_fraction: float = option(0.1, help="Share of works (not files) held out for evaluation.")
    seed: int = option(0, help="Seed of the split and of the collection samples; the same seed gives the same corpus.")
    workers: int = option(0, help="Conversion processes; 0 means one per CPU core.")
    max_chars: int = option(
        60000, help="Pieces whose interleaved ABC is longer than this many characters are rejected."
    )
    min_bars: int = option(4, help="Pieces with fewer bars are rejected.")
    max_voices: int = option(16, help="Pieces with more voices are rejected.")
    require_aligned_durations: bool = option(
        False,
        help="Also reject pieces whose bars last differently in different voices (abctoolkit's "
        "alignment check); NotaGen itself rejects only unequal bar counts.",
    )
    max_file_mb: float = option(
        5.0, help="Files larger than this many megabytes are rejected unread (a score is rarely over 1 MB)."
    )
    convert_timeout_s: float = option(
        60.0, help="One piece may take this many seconds to convert; a worker past it is killed and replaced."
    )
    convert_memory_mb: int = option(
        1024, help="One piece may take this many MB of memory to convert; a worker past it is killed and replaced."
    )
    unit_length: int = option(8, help="Denominator of L: passed to xml2abc as -d (NotaGen uses 8).")
    metadata_overrides: Optional[str] = option(
        None,
        help="CSV or JSON file mapping piece ids (or source paths, or glob patterns) to "
        "period/composer/instrumentation that replace the inferred ones.",
    )

    def __post_init__(self) -> None:
        check(len(self.sources) > 0, "sources", "name at least one source ('music21' or a folder)")
        check(0.0 <= self.eval_fraction < 1.0, "eval_fraction", f"must be in [0, 1), got {self.eval_fraction}")
        check(self.limit >= 0, "limit", f"must be >= 0, got {self.limit}")
        check(self.workers >= 0, "workers", f"must be >= 0, got {self.workers}")
        check(self.max_chars > 0, "max_chars", f"must be > 0, got {self.max_chars}")
        check(self.min_bars >= 1, "min_bars", f"must be >= 1, got {self.min_bars}")
        check(self.max_voices >= 1, "max_voices", f"must be >= 1, got {self.max_voices}")
        check(self.max_file_mb > 0, "max_file_mb", f"must be > 0, got {self.max_file_mb}")
        check(self.convert_timeout_s > 0, "convert_timeout_s", f"must be > 0, got {self.convert_timeout_s}")
        check(self.convert_memory_mb >= 64, "convert_memory_mb", f"must be ≥ 64, got {self.convert_memory_mb}")
        check(
            self.unit_length in (1, 2, 4, 8, 16, 32, 64),
            "unit_length",
            f"must be a power of two up to 64, got {self.unit_length}",
        )
        for name, n in self.collection_limits.items():
            check(n > 0, f"collection_limits.{name}", f"must be > 0, got {n}")
