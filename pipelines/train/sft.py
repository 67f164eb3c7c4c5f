"""What SFT needs apart from Ray and DeepSpeed: the corpus as patch batches, the schedule, eval and baseline.

Data order is a pure function of (seed, step): step s of a run takes pieces from the epoch permutation
it falls in, and each piece's streaming cut is drawn from its own (seed, epoch, piece) generator. A
resumed run therefore sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from base.corpus import split_rows
from base.padding import pad_patches
from models.patchilizer import PAD_ID, VOCAB_SIZE, Patchilizer


@dataclass
class Piece:
    id: str
    prompt: str
    text: str


def load_split(corpus_dir: str | Path, split: str) -> list[Piece]:
    """Pieces of a built corpus split (``train`` or ``eval``), NotaGen form with prompt lines."""
    corpus = Path(corpus_dir)
    return [
        Piece(row["id"], row["prompt"], (corpus / row["path"]).read_text(encoding="utf-8"))
        for row in split_rows(corpus, split)
    ]


class PatchBatches:
    """Deterministic batches of patch ids from a list of pieces."""

    def __init__(self, pieces: list[Piece], patchilizer: Patchilizer, seed: int = 0):
        if not pieces:
            raise ValueError("no pieces to train on")
        self.pieces, self.patchilizer, self.seed = pieces, patchilizer, seed

    def encode(self, index: int, epoch: int = 0) -> list[list[int]]:
        rng = random.Random(f"{self.seed}/{epoch}/{index}")
        return self.patchilizer.encode_train(self.pieces[index].text, rng)

    def indices(self, step: int, global_batch: int) -> list[tuple[int, int]]:
        """(piece index, epoch) of the ``global_batch`` pieces of optimizer step ``step``."""
        n = len(self.pieces)
        out = []
        for k in range(step * global_batch, (step + 1) * global_batch):
            epoch, pos = divmod(k, n)
            out.append((self._order(epoch)[pos], epoch))
        return out

    def _order(self, epoch: int) -> list[int]:
        if getattr(self, "_order_epoch", None) != epoch:
            order = list(range(len(self.pieces)))
            random.Random(f"{self.seed}/order/{epoch}").shuffle(order)
            self._order_epoch, self._order_cache = epoch, order
        return self._order_cache

    def collate(self, items: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded patches (B, P, 16) and patch mask (B, P)."""
        return pad_patches([self.encode(i, e) for i, e in items], self.patchilizer.patch_size, PAD_ID)

    def micro_batch(
        self, step: int, micro: int, rank: int, world: int, batch_pieces: int, grad_accum: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This worker's share of one micro-batch of an optimizer step."""
        items = self.indices(step, batch_pieces * world * grad_accum)
        start = (micro * world + rank) * batch_pieces
        return self.collate(items[start : start + batch_pieces])

    def eval_batches(self, batch_pieces: int, limit: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Fixed eval batches: the head of each piece (no random cut), optionally a seeded sample."""
        order = list(range(len(self.pieces)))
        if limit and limit < len(order):
            order = sorted(random.Random(f"{self.seed}/eval").sample(order, limit))
        for start in range(0, len(order), batch_pieces):
            yield self.collate([(i, -1) for i in order[start : start + batch_pieces]])


def lr_at(step: int, peak: float, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to ``peak`` then cosine decay to ``peak × min_ratio`` at ``total``: a function of the
    step alone, so a run's outcome does not depend on how fast the machine is."""
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def scored_chars(patches: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The chars a model is scored on: every non-pad char of patches after the first (as `patch_loss`)."""
    targets = patches[:, 1:]
    return targets[(targets != PAD_ID) & mask[:, 1:, None].bool()]


def unigram_bits(
    train: PatchBatches, eval_batches: Iterable[tuple[torch.Tensor, torch.Tensor]], sample: int = 2000
) -> float:
    """Cross-entropy (bits/char) of the eval chars under the train split's char frequencies (add-one)."""
    counts = torch.ones(VOCAB_SIZE, dtype=torch.float64)
    rng = random.Random(train.seed)
    indices = rng.sample(range(len(train.pieces)), min(sample, len(train.pieces)))
    for start in range(0, len(indices), 64):
        patches, mask = train.collate([(i, 0) for i in indices[start : start + 64]])
        counts += torch.bincount(scored_chars(patches, mask), minlength=VOCAB_SIZE).double()
    logp = (counts / counts.sum()).log2()
    total, n = 0.0, 0
    for patches, mask in eval_batches:
        chars = scored_chars(patches, mask)
        total -= float(logp[chars].sum())
        n += chars.numel()
    return total / max(1, n)


@torch.no_grad()
def eval_sums(
    loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], batches: Iterable, device: torch.device
) -> tuple[float, int]:
    """Summed NLL (nats) and number of scored chars over ``batches``; ``loss_of(patches, mask)`` is the mean
    NLL per scored char of a batch (``model.patch_loss``, or a DeepSpeed engine's forward)."""
    total, n = 0.0, 0
    for patches, mask in batches:
        count = int(scored_chars(patches, mask).numel())
        total += float(loss_of(patches.to(device), mask.to(device))) * count
        n += count
    return total, n


def eval_metrics(total: float, n: float) -> dict[str, float]:
    """``eval/loss`` (nats per char) and ``eval/bpc`` (bits per char) of summed NLL over n chars."""
    loss = total / max(1.0, n)
    return {"eval/loss": loss, "eval/bpc": loss / math.log(2), "eval/chars": float(n)}


def evaluate(model: torch.nn.Module, batches: Iterable, device: torch.device) -> dict[str, float]:
    """Eval metrics of a model on one process (the SFT workers shard ``eval_sums`` and add them up)."""
    was_training = model.training
    model.eval()
    try:
        return eval_metrics(*eval_sums(lambda p, m: model.patch_loss(p, m)[0], batches, device))
    finally:
        model.train(was_training)
