"""Batching of patch sequences: the one right-padding both the decoder and the evaluator use."""

from __future__ import annotations

import torch


def pad_patches(rows: list[list[list[int]]], patch_size: int, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (B, P, patch_size) and patch mask (B, P) of pieces given as lists of patches."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width, patch_size), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask
