"""The evaluator's view of the corpus: interleaved pieces with their metadata text, and training batches."""

from __future__ import annotations

import hashlib
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from base.corpus import manifest, split_rows
from base.padding import pad_patches
from evaluators.m3_patchilizer import EOS_ID, MASK_ID, PAD_ID, M3Patchilizer

log = logging.getLogger(__name__)

TEXT_FIELDS = ("period", "composer", "instrumentation", "title")


@dataclass
class Piece:
    id: str
    prompt: str
    text: str  # the interleaved (CLaMP-ready) ABC
    meta: dict

    @property
    def composer(self) -> str:
        return self.meta.get("composer", "")


def in_subset(piece_id: str, subset: str) -> bool:
    if subset == "all":
        return True
    parity = int(hashlib.sha256(piece_id.encode()).hexdigest(), 16) % 2
    return parity == (0 if subset == "even" else 1)


def load_pieces(corpus: str | Path, split: str, subset: str = "all") -> list[Piece]:
    """Pieces of a corpus split (``train`` / ``eval``), read from ``interleaved/``; unreadable files are
    reported and skipped."""
    corpus = Path(corpus)
    rows = split_rows(corpus, split)
    known = manifest(corpus)
    pieces = []
    for row in rows:
        if not in_subset(row["id"], subset):
            continue
        meta = {**known.get(row["id"], {}), **row}
        rel = (meta.get("files") or {}).get("interleaved") or f"interleaved/{row['id']}.abc"
        path = corpus / rel
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            log.warning("%s: skipped (%s)", path, err)
            continue
        pieces.append(Piece(row["id"], row.get("prompt", ""), text, meta))
    return pieces


def metadata_text(meta: dict, rng: random.Random | None = None) -> str:
    """The text a piece is paired with; with ``rng``, half the time a random subset of its fields (CLaMP 2's
    text dropout)."""
    fields = [(k, str(meta[k])) for k in TEXT_FIELDS if meta.get(k)]
    if rng is not None and len(fields) > 1 and rng.random() < 0.5:
        keep = rng.randint(1, len(fields))
        fields = sorted(rng.sample(fields, keep), key=lambda kv: TEXT_FIELDS.index(kv[0]))
    return "\n".join(f"{k}: {v}" for k, v in fields)


def crop(patches: list[list[int]], length: int, rng: random.Random) -> list[list[int]]:
    """Head, tail or middle ``length`` patches of a long piece, as CLaMP 2 crops for training."""
    if len(patches) <= length:
        return patches
    choice = rng.choice(("head", "tail", "middle"))
    if choice == "head":
        return patches[:length]
    if choice == "tail":
        return patches[-length:]
    start = rng.randint(1, len(patches) - length)
    return patches[start : start + length]


def mask_patches(
    patches: list[list[int]], ratio: float, rng: random.Random, mode: str | None = None
) -> tuple[list[list[int]], list[int]]:
    """M3's corruption: ceil(ratio·n) patches selected; per sequence 80% masked, 10% chars shuffled inside,
    10% kept. Returns (inputs, selected flags). ``mode`` forces one of mask / shuffle / original."""
    n = len(patches)
    chosen = sorted(rng.sample(range(n), math.ceil(ratio * n)))
    mode = mode or rng.choices(("mask", "shuffle", "original"), weights=(0.8, 0.1, 0.1))[0]
    inputs = [list(p) for p in patches]
    size = len(patches[0])
    for i in chosen:
        if mode == "mask":
            inputs[i] = [MASK_ID] * size
        elif mode == "shuffle":
            p = inputs[i]
            end = p.index(EOS_ID, 1) if EOS_ID in p[1:] else size
            middle = p[1:end]
            rng.shuffle(middle)
            inputs[i] = p[:1] + middle + p[end:]
    selected = [0] * n
    for i in chosen:
        selected[i] = 1
    return inputs, selected


class Batches:
    """Deterministic batches: the order of step k depends only on (seed, k)."""

    def __init__(self, pieces: list[Piece], patchilizer: M3Patchilizer, train_patches: int, seed: int):
        self.pieces = pieces
        self.patchilizer = patchilizer
        self.train_patches = train_patches
        self.seed = seed
        self._encoded = [patchilizer.encode(p.text) for p in pieces]

    def _pick(self, step: int, batch_size: int) -> tuple[random.Random, list[int]]:
        rng = random.Random(self.seed * 1_000_003 + step)
        return rng, rng.sample(range(len(self.pieces)), min(batch_size, len(self.pieces)))

    def masked(
        self, step: int, batch_size: int, ratio: float, mode: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inputs, patch mask, selected flags, targets) of a masked-patch step."""
        rng, idx = self._pick(step, batch_size)
        targets, inputs, selected = [], [], []
        for i in idx:
            p = crop(self._encoded[i], self.train_patches, rng)
            x, s = mask_patches(p, ratio, rng, mode)
            targets.append(p)
            inputs.append(x)
            selected.append(s)
        size = self.patchilizer.patch_size
        target_ids, mask = pad_patches(targets, size, PAD_ID)
        input_ids, _ = pad_patches(inputs, size, PAD_ID)
        sel = torch.zeros_like(mask)
        for i, s in enumerate(selected):
            sel[i, : len(s)] = torch.tensor(s)
        return input_ids, mask, sel, target_ids

    def paired(
        self, step: int, batch_size: int, text_dropout: bool, hard_negatives: list[str] | tuple = ()
    ) -> tuple[list[str], torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None, list[str]]:
        """(texts, patches, mask, negatives, prompts): ``negatives`` is (patches, mask) of one corrupted copy
        per piece (a training corruption, cropped like its piece) or None; ``prompts`` the pieces' prompts."""
        from evaluators.corrupt import TRAINING_CORRUPTIONS

        rng, idx = self._pick(step, batch_size)
        texts = [metadata_text(self.pieces[i].meta, rng if text_dropout else None) for i in idx]
        patches = [crop(self._encoded[i], self.train_patches, rng) for i in idx]
        ids, mask = pad_patches(patches, self.patchilizer.patch_size, PAD_ID)
        negatives = None
        if hard_negatives:
            kinds = [TRAINING_CORRUPTIONS[k] for k in hard_negatives]
            bad = [self.corrupt_crop(p, rng.choice(kinds), rng) for p in patches]
            negatives = pad_patches(bad, self.patchilizer.patch_size, PAD_ID)
        return texts, ids, mask, negatives, [self.pieces[i].prompt for i in idx]

    def corrupt_crop(
        self, patches: list[list[int]], corruption: Callable[[str, random.Random], str], rng: random.Random
    ) -> list[list[int]]:
        """A corrupted copy of exactly the material of a training crop.

        Corrupting the whole piece and cropping that would, for a piece longer than the crop, give a negative
        holding other bars than its positive: the encoder is then taught to tell two excerpts apart, not a
        piece from its reordered self. So the crop's text is corrupted and re-encoded, with the bos / eos
        patches the crop had.
        """
        bos, eos = self.patchilizer.bos_patch, self.patchilizer.eos_patch
        text = self.patchilizer.decode(patches)
        out = self.patchilizer.encode(corruption(text, rng), special_patches=False)
        out = ([bos] if patches[0] == bos else []) + out + ([eos] if patches[-1] == eos else [])
        return out[: self.train_patches] or [bos]
