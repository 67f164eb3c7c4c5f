"""The reward's own geometry, trained directly: a real piece must score above its corrupted copy.

The CLaMP score is the cosine between a piece's feature and the centroid of its prompt's real pieces, both
taken from the global mean when the evaluator centres its features. Contrastive training alone puts every
piece of a prompt near its centroid, mistakes or not: on a tiny evaluator the starting policy's samples,
whose bars rarely fill the meter, scored as high as real pieces (real vs sample AUC 0.46-0.59). This loss
asks, for each training piece and its hard negative (a copy with the mistakes a generating model makes),

    max(0, margin − cos(x − μ, c_p − μ) + cos(x̃ − μ, c_p − μ))

with running means of the prompts' centroids c_p and of the global mean μ (μ = 0 without centring), so the
score itself, not only the text match, separates real music from broken music.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class CentroidMargin:
    """Running prompt centroids and global mean of the real pieces' raw features, and the margin loss."""

    def __init__(self, margin: float, center: bool, momentum: float = 0.9):
        self.margin, self.center, self.momentum = margin, center, momentum
        self.centroids: dict[str, torch.Tensor] = {}
        self.mean: torch.Tensor | None = None

    def update(self, features: torch.Tensor, prompts: list[str]) -> None:
        """Move the running means toward this batch's real pieces (detached)."""
        x = features.detach().float()
        mean = x.mean(0)
        self.mean = mean if self.mean is None else self.momentum * self.mean + (1 - self.momentum) * mean
        for p in set(prompts):
            batch = x[[i for i, q in enumerate(prompts) if q == p]].mean(0)
            old = self.centroids.get(p)
            self.centroids[p] = batch if old is None else self.momentum * old + (1 - self.momentum) * batch

    def loss(self, real: torch.Tensor, corrupted: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """Mean hinge of the score gap between each real piece and its corrupted copy (0 before any update;
        call ``update`` with the batch first, so that every prompt has a centroid)."""
        if self.mean is None:
            return real.new_zeros(())
        mu = self.mean if self.center else torch.zeros_like(self.mean)
        cents = torch.stack([self.centroids[p] for p in prompts]).to(real.dtype) - mu.to(real.dtype)
        pos = F.cosine_similarity(real - mu.to(real.dtype), cents, dim=-1)
        neg = F.cosine_similarity(corrupted - mu.to(real.dtype), cents, dim=-1)
        return F.relu(self.margin - pos + neg).mean()
