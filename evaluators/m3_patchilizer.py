"""CLaMP 2's M3 patching of (interleaved) ABC: one patch per header line, one per voice per bar.

The evaluator must see a piece exactly as CLaMP 2 does, or imported CLaMP 2 weights would score a
different input than they were trained on. The facts matched here are in ../shared/reference/clamp2.md:
unidecode, header/directive lines as whole patches, other lines split on barlines (a leading barline joins
the first bar, text after the last barline is dropped, the line's newline goes on its last patch), patches
of 64 ids = bos + chars + eos truncated and padded, whole bos/eos patches around the piece.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from unidecode import unidecode

PAD_ID, BOS_ID, EOS_ID, MASK_ID = 0, 1, 2, 3
VOCAB_SIZE = 128
PATCH_SIZE = 64
PATCH_LENGTH = 512

BARLINES = ("|:", "::", ":|", "[|", "||", "|]", "|")
_BARLINE_RE = re.compile("(" + "|".join(re.escape(b) for b in BARLINES) + ")")
_HEADER_RE = re.compile(r"^[A-Za-z]:")


def preprocess(text: str) -> str:
    """The one cleaning step used for training and for feature extraction.

    ASCII only (as CLaMP 2), and ``%`` comment lines dropped but ``%%`` directives kept (as NotaGen's
    extraction): our training files carry the prompt as ``%period`` lines, which must not leak into the
    music feature that is compared with the prompt's centroid. ``L:1/8`` is kept (CLaMP 2's extraction
    keeps it; removing it only in training would make the two disagree).
    """
    lines = unidecode(text).splitlines(keepends=True)
    return "".join(ln for ln in lines if not (ln.startswith("%") and not ln.startswith("%%")))


def split_bars(line: str) -> list[str]:
    """Split one body line into bars, each with its closing barline; text after the last barline is dropped."""
    parts = [p for p in _BARLINE_RE.split(line) if p]
    if not parts:
        return []
    if parts[0] in BARLINES and len(parts) > 1:
        parts = [parts[0] + parts[1]] + parts[2:]
    return [parts[2 * i] + parts[2 * i + 1] for i in range(len(parts) // 2)]


def segments(text: str) -> list[str]:
    """The text of every patch of an already preprocessed piece (no special patches)."""
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        if not line:
            continue
        if len(line) > 1 and (_HEADER_RE.match(line) or line.startswith("%%")):
            out.append(line)
            continue
        bars = split_bars(line)
        if bars:
            bars[-1] += "\n"
            out.extend(bars)
    return out


def segment_ids(segment: str, patch_size: int = PATCH_SIZE) -> list[int]:
    ids = ([BOS_ID] + [ord(c) if ord(c) < VOCAB_SIZE else ord("?") for c in segment] + [EOS_ID])[:patch_size]
    return ids + [PAD_ID] * (patch_size - len(ids))


def patch_text(ids: list[int]) -> str:
    return "".join(chr(i) for i in ids if i > MASK_ID)


@dataclass(frozen=True)
class M3Patchilizer:
    """Text → (n, patch_size) ids, with the bos/eos patches CLaMP 2 adds around every piece."""

    patch_size: int = PATCH_SIZE

    def encode(self, text: str, special_patches: bool = True) -> list[list[int]]:
        patches = [segment_ids(s, self.patch_size) for s in segments(preprocess(text))]
        if special_patches:
            patches = [[BOS_ID] * self.patch_size] + patches + [[EOS_ID] * self.patch_size]
        return patches

    def decode(self, patches: list[list[int]]) -> str:
        return "".join(patch_text(p) for p in patches)


def feature_windows(n_patches: int, length: int = PATCH_LENGTH) -> list[tuple[int, int, int]]:
    """CLaMP 2's windows over a patch sequence: ``(start, end, weight)``.

    Windows of ``length`` patches; the last window is the final ``length`` patches (it may overlap the one
    before) and weighs ``n % length`` (or ``length`` when it divides), so each patch counts about once.
    """
    if n_patches <= 0:
        raise ValueError("a piece has at least its bos and eos patches")
    if n_patches <= length:
        return [(0, n_patches, n_patches)]
    full = n_patches // length
    windows = [(i * length, (i + 1) * length, length) for i in range(full)]
    rest = n_patches % length
    if rest:
        windows.append((n_patches - length, n_patches, rest))
    return windows
