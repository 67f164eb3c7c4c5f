"""``Evaluator``: a trained (or imported) model plus the ground-truth features it scores against.

An evaluator folder holds ``model/`` (safetensors) and ``reference.npz`` (id, prompt, composer, split and
feature of every ground-truth piece, plus a pointer to the corpus for the plagiarism text check). The
object is picklable by path, so a Ray actor can host one (``Evaluator.load(dir)`` inside the actor).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from base import atomic
from base.abc.interleave import InterleaveError, deinterleave
from evaluators import guards
from evaluators.config import PLAGIARISM_THRESHOLD, EvaluatorConfig
from evaluators.features import FeatureCache, FeatureExtractor
from evaluators.meter import fill_rate
from evaluators.scores import GLOBAL, centroids, cosine
from evaluators.validity import check_validity

log = logging.getLogger(__name__)


@dataclass
class Reference:
    """The ground-truth set: one row per piece."""

    ids: list[str]
    prompts: list[str]
    composers: list[str]
    splits: list[str]
    features: np.ndarray
    corpus: str = ""

    def save(self, path: str | Path) -> None:
        atomic.write_npz(
            path,
            ids=np.array(self.ids),
            prompts=np.array(self.prompts),
            composers=np.array(self.composers),
            splits=np.array(self.splits),
            features=self.features.astype(np.float32),
            corpus=np.array(self.corpus),
        )

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        with np.load(path) as z:
            return cls(
                [str(x) for x in z["ids"]],
                [str(x) for x in z["prompts"]],
                [str(x) for x in z["composers"]],
                [str(x) for x in z["splits"]],
                z["features"],
                str(z["corpus"]),
            )

    def centred(self) -> tuple[Reference, np.ndarray | None]:
        """The same rows with the mean feature subtracted, and that mean (None for an empty reference)."""
        if not len(self.features):
            return self, None
        offset = self.features.mean(0)
        return Reference(
            self.ids, self.prompts, self.composers, self.splits, self.features - offset, self.corpus
        ), offset

    def scoring(self, center: bool) -> tuple[Reference, np.ndarray | None]:
        """The reference in the space scores are computed in, and the offset samples are moved by: centred on
        its mean feature with ``center`` (``evaluator.center_features``), else as it is (offset None)."""
        return self.centred() if center else (self, None)

    def select(self, splits: tuple[str, ...]) -> Reference:
        keep = [i for i, s in enumerate(self.splits) if s in splits]
        return Reference(
            [self.ids[i] for i in keep],
            [self.prompts[i] for i in keep],
            [self.composers[i] for i in keep],
            [self.splits[i] for i in keep],
            self.features[keep],
            self.corpus,
        )


@dataclass
class ScoreRecord:
    """What the evaluator says about one sample."""

    prompt: str
    clamp_score: float  # cosine to the prompt's centroid (nan when the prompt has no ground truth)
    clamp_score_global: float  # cosine to the centroid of all ground truth
    valid: bool = False  # parses (abc2xml → music21) and its bars are aligned across voices: NotaGen's check
    parses: bool = False
    aligned: bool = False
    invalid_reason: str = ""
    plagiarism: bool = False
    max_feature_cosine: float = math.nan
    max_text_similarity: float = math.nan
    pitch_class_entropy: float = math.nan
    meter_bars: int = 0  # voice-bars checked against the meter (evaluators/meter.py)
    meter_full: int = 0  # of those, the bars that fill it
    time_signature: str = ""  # its header's M: (the metre distribution is a guard: evaluators/meter.py)
    music21_reads: bool | None = None  # music21's own ABC reader reads it (None: not checked)
    stats: dict[str, list[int]] | None = None  # note histograms (evaluators/music_stats.py), when it parses
    music: dict[str, float] | None = None  # scalar music statistics (music_stats.SCALARS), when it parses
    feature: list[float] = field(default_factory=list, repr=False)

    @property
    def meter_fill(self) -> float:
        return fill_rate(self.meter_full, self.meter_bars)

    def to_dict(self, with_feature: bool = False) -> dict:
        out = asdict(self)
        if not with_feature:
            out.pop("feature")
        return out


class Evaluator:
    """Scores pieces against the centroids of ground-truth pieces of their prompts."""

    def __init__(
        self,
        extractor: FeatureExtractor,
        reference: Reference,
        splits: tuple[str, ...] = ("train",),
        plagiarism_cosine: float | None = PLAGIARISM_THRESHOLD,
        center: bool = False,
    ):
        self.extractor = extractor
        # Centring: features minus the mean ground-truth feature, before any cosine. A small evaluator
        # trained here puts every piece in a narrow cone (cosines to any centroid ≈ 0.9), which hides the
        # differences a reward needs; CLaMP 2's features do not need it (center=False is NotaGen's score).
        reference, self.offset = reference.scoring(center)
        if plagiarism_cosine is None:  # calibrate on the reference: held-out real pieces vs train pieces
            held = reference.select(("eval",)).features
            plagiarism_cosine = guards.copy_cosine(held, reference.select(("train",)).features)
        self.plagiarism_cosine = plagiarism_cosine
        self.reference = reference.select(splits)
        self.centroids = centroids(self.reference.features, self.reference.prompts)
        self._rows_of: dict[str, list[int]] = defaultdict(list)  # prompt → rows of the reference
        for j, p in enumerate(self.reference.prompts):
            self._rows_of[p].append(j)
        self._ref_texts: dict[str, list[str]] | None = None

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str | None = None,
        batch_size: int = 16,
        splits: tuple[str, ...] = ("train",),
        plagiarism_cosine: float | None = PLAGIARISM_THRESHOLD,
        center: bool = False,
    ) -> Evaluator:
        from evaluators.model import ClampModel

        path = Path(path)
        if not (path / "model").is_dir() or not (path / "reference.npz").is_file():
            raise FileNotFoundError(
                f"{path}: not an evaluator folder (needs model/ and reference.npz; "
                "train one with `clampdpo evaluator train`)"
            )
        model = ClampModel.from_pretrained(path / "model")
        cache = FeatureCache(path / "feature_cache.npz")
        return cls(
            FeatureExtractor(model, device, batch_size, cache),
            Reference.load(path / "reference.npz"),
            splits,
            plagiarism_cosine,
            center,
        )

    @classmethod
    def for_config(cls, path: str | Path, cfg: EvaluatorConfig, device: str | None = None) -> Evaluator:
        """The evaluator in ``path`` read the way its config section says (centring, plagiarism cosine,
        feature batch size, device): what a campaign's scorer loads for the reward and for the judge."""
        return cls.load(
            path,
            device or cfg.device,
            cfg.feature_batch_size,
            plagiarism_cosine=cfg.plagiarism_cosine,
            center=cfg.center_features,
        )

    @property
    def prompts(self) -> list[str]:
        return [k for k in self.centroids if k != GLOBAL]

    def features(self, texts: list[str], progress: bool = False) -> np.ndarray:
        feats = self.extractor.extract(texts, progress)
        return feats - self.offset if self.offset is not None else feats

    def reference_texts(self, prompt: str) -> list[str]:
        """Ground-truth texts of a prompt, read lazily from the corpus (for the Levenshtein rule)."""
        if self._ref_texts is None:
            self._ref_texts = defaultdict(list)
            corpus = Path(self.reference.corpus)
            for pid, p in zip(self.reference.ids, self.reference.prompts):
                f = corpus / "interleaved" / f"{pid}.abc"
                if f.is_file():
                    self._ref_texts[p].append(f.read_text(encoding="utf-8"))
        return self._ref_texts.get(prompt, [])

    def score(
        self,
        abc_texts: list[str],
        prompts: list[str],
        guards_on: bool = True,
        with_features: bool = False,
        progress: bool = False,
        check_music21_reads: bool = False,
    ) -> list[ScoreRecord]:
        """One record per (interleaved ABC, prompt): CLaMP score and, with ``guards_on``, validity,
        plagiarism, pitch-class entropy, meter fill and note statistics; with ``check_music21_reads`` also whether
        music21's own ABC reader reads it (a tenth of a second a piece). A missing or empty text scores nan
        and is invalid."""
        if len(abc_texts) != len(prompts):
            raise ValueError(f"{len(abc_texts)} texts but {len(prompts)} prompts")
        texts = [t or "" for t in abc_texts]
        readable = [i for i, t in enumerate(texts) if t.strip()]
        readable_rows = set(readable)
        feats = np.full((len(texts), self.extractor.model.config.projection_size), np.nan, dtype=np.float32)
        if readable:
            feats[readable] = self.features([texts[i] for i in readable], progress)
        records = []
        for i, (text, prompt) in enumerate(zip(texts, prompts)):
            f = feats[i]
            ok = i in readable_rows
            centroid = self.centroids.get(prompt)
            score = float(cosine(f[None], centroid)[0]) if ok and centroid is not None else math.nan
            # centred features have a zero global mean: there is no global score then
            global_score = float(cosine(f[None], self.centroids[GLOBAL])[0]) if ok and self.offset is None else math.nan
            rec = ScoreRecord(prompt, score, global_score, feature=f.tolist() if with_features else [])
            if guards_on and ok:
                self._guard(rec, text, f, check_music21_reads)
            elif not ok:
                rec.invalid_reason = "empty piece"
            records.append(rec)
        return records

    def _guard(self, rec: ScoreRecord, text: str, feature: np.ndarray, check_music21_reads: bool) -> None:
        """The checks of one readable piece that are not the reward."""
        from evaluators.meter import meter_fill, time_signature
        from evaluators.music_stats import describe, music21_reads, note_stats

        v = check_validity(text)
        rec.valid, rec.parses, rec.aligned, rec.invalid_reason = v.valid, v.parses, v.aligned, v.reason
        keep = self._rows_of.get(rec.prompt, [])
        ref = self.reference.features[keep] if keep else np.zeros((0, len(feature)))
        [plag] = guards.plagiarism(
            [text], feature[None], self.reference_texts(rec.prompt), ref, feature_threshold=self.plagiarism_cosine
        )
        rec.plagiarism, rec.max_feature_cosine, rec.max_text_similarity = (
            plag.plagiarism,
            plag.max_feature_cosine,
            plag.max_text_similarity,
        )
        if v.parses:
            rec.pitch_class_entropy = guards.pitch_class_entropy(text, v.score)
            try:
                rec.stats = note_stats(v.score)
                rec.music = describe(v.score)
            except Exception:  # an odd score object: no statistics for this piece
                rec.stats, rec.music = None, None
        rec.time_signature = time_signature(text)
        try:
            fill = meter_fill(text)
            rec.meter_bars, rec.meter_full = fill.bars, fill.full
        except Exception as err:  # generated text can hold anything: a guard that cannot read it counts nothing
            log.debug("meter fill of a %s piece: %s", rec.prompt, err)
        if check_music21_reads:
            try:
                standard = "".join(deinterleave(text.splitlines(keepends=True)))
                rec.music21_reads = music21_reads(standard)[0]
            except InterleaveError:
                rec.music21_reads = False

    def set_metrics(self, features: np.ndarray, prompts: list[str]) -> dict[str, float]:
        """Diversity and Fréchet distance of a set of samples (``guards.set_metrics``)."""
        return guards.set_metrics(features, prompts, self.reference.features, self.reference.prompts)
