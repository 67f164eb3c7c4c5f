"""Global music features, as CLaMP 2 extracts them: windowed, pooled, projected, length-weighted.

A piece's patches (with bos/eos patches) are cut into windows of ``patch_length`` (see
``feature_windows``); each window is encoded, average-pooled and projected; the piece's feature is the
mean of its windows weighted by their lengths. Windows of many pieces are batched together, sorted by
length so padding stays small. Features are cached by content hash (of the preprocessed text, so the
prompt comment lines do not split the cache) in one ``.npz`` per evaluator.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from base import atomic
from base.padding import pad_patches
from evaluators.m3_patchilizer import PAD_ID, PATCHING_VERSION, M3Patchilizer, feature_windows, preprocess
from evaluators.model import ClampModel

log = logging.getLogger(__name__)


def content_hash(text: str, family: str = "notagen") -> str:
    """The cache key of a text: its preprocessed form (so prompt comment lines do not split the cache), with
    the family and the patching version (so a change of either never serves old features)."""
    key = f"{PATCHING_VERSION}:{family}:{preprocess(text, family)}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def pick_device(device: str | torch.device | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_fingerprint(model: torch.nn.Module) -> str:
    """A hash of the weights: features cached for one model are never served for another."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


FINGERPRINT_KEY = "__model__"


class FeatureCache:
    """``{content hash: feature}`` of one model, persisted atomically as one npz file.

    The file records the model's fingerprint; opened for another model (retrained, re-imported) it
    starts empty instead of serving stale features.
    """

    def __init__(self, path: str | Path | None, fingerprint: str | None = None):
        self.path = Path(path) if path else None
        self.fingerprint = fingerprint  # None: not bound to a model yet (the extractor binds it)
        self.data: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        if self.path and self.path.is_file() and fingerprint is not None:
            with np.load(self.path) as npz:
                stored = str(npz[FINGERPRINT_KEY]) if FINGERPRINT_KEY in npz.files else ""
                if stored == fingerprint:
                    self.data = {k: npz[k] for k in npz.files if k != FINGERPRINT_KEY}
                else:
                    log.info("%s: cached features belong to another model; starting afresh", self.path)

    def get(self, key: str) -> np.ndarray | None:
        return self.data.get(key)

    def put(self, items: dict[str, np.ndarray]) -> None:
        with self._lock:
            self.data.update(items)
            if self.path and items:
                atomic.write_npz(self.path, **self.data, **{FINGERPRINT_KEY: np.array(self.fingerprint or "")})


class FeatureExtractor:
    """Batched global features of ABC texts with a :class:`ClampModel`."""

    def __init__(
        self,
        model: ClampModel,
        device: str | torch.device | None = None,
        batch_size: int = 16,
        cache: FeatureCache | None = None,
    ):
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size
        self.patchilizer = M3Patchilizer(model.config.patch_size, model.config.preprocess)
        self.patch_length = model.config.patch_length
        self.cache = cache or FeatureCache(None)
        if self.cache.path is not None:
            fingerprint = model_fingerprint(self.model)
            if fingerprint != self.cache.fingerprint:
                self.cache = FeatureCache(self.cache.path, fingerprint)
        self.bf16 = self.device.type == "cuda" and torch.cuda.is_bf16_supported()

    def windows(self, text: str) -> list[tuple[list[list[int]], int]]:
        """(patches of the window, weight) for every window of a piece."""
        patches = self.patchilizer.encode(text)
        return [(patches[s:e], w) for s, e, w in feature_windows(len(patches), self.patch_length)]

    @torch.no_grad()
    def _encode(self, windows: list[list[list[int]]]) -> np.ndarray:
        ids, mask = pad_patches(windows, self.patchilizer.patch_size, PAD_ID)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
            out = self.model.music_features(ids.to(self.device), mask.to(self.device))
        return out.float().cpu().numpy()

    def extract(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """(len(texts), projection_size) features, in order."""
        keys = [content_hash(t, self.patchilizer.family) for t in texts]
        todo = sorted({k: i for i, k in enumerate(keys) if self.cache.get(k) is None}.items(), key=lambda kv: kv[1])
        found: dict[str, np.ndarray] = {}
        if todo:
            jobs: list[tuple[str, list[list[int]], int]] = []  # (key, window patches, weight)
            for key, i in todo:
                jobs.extend((key, w, weight) for w, weight in self.windows(texts[i]))
            jobs.sort(key=lambda j: len(j[1]))
            sums: dict[str, np.ndarray] = {}
            weights: dict[str, float] = {}
            bar = tqdm(total=len(jobs), desc="features", unit="window", disable=not progress)
            for start in range(0, len(jobs), self.batch_size):
                chunk = jobs[start : start + self.batch_size]
                feats = self._encode([j[1] for j in chunk])
                for (key, _, weight), f in zip(chunk, feats):
                    sums[key] = sums.get(key, 0) + weight * f.astype(np.float64)
                    weights[key] = weights.get(key, 0) + weight
                bar.update(len(chunk))
            bar.close()
            found = {k: (sums[k] / weights[k]).astype(np.float32) for k in sums}
            self.cache.put(found)
        dim = self.model.config.projection_size
        out = np.zeros((len(texts), dim), dtype=np.float32)
        for i, key in enumerate(keys):
            out[i] = found[key] if key in found else self.cache.get(key)
        return out
