"""CLaMP's M3 patching of (interleaved) ABC: one patch per header line, one per voice per bar.

The evaluator must see a piece exactly as the model it runs was trained to, or imported CLaMP 2 / CLaMP 3
weights would score a different input. The rules (../shared/reference/clamp2.md, checked against
sanderwood/clamp2 and clamp3 ``code/utils.py`` and NotaGen's ``clamp2/extract_clamp2.py``):

* the text is first prepared the way the family's own feature extraction prepares it (``preprocess``),
  then made ASCII (unidecode);
* lines are cut after each ``\\n``; a header or directive line (``X:...``, ``%%...``) is one patch, any other
  line is split on barlines (a leading barline joins the first bar, text after the last barline is dropped,
  the line's last bar gets a ``\\n``);
* a patch is bos + character codes + eos, cut to 64 ids and padded with 0;
* a piece is framed by two special patches built the same way from ``chr(1) * 64`` and ``chr(2) * 64``:
  the first is 64 × bos, the last is **bos followed by 63 × eos** (the 66-id string is cut to 64).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from unidecode import unidecode

PAD_ID, BOS_ID, EOS_ID, MASK_ID = 0, 1, 2, 3
VOCAB_SIZE = 128
PATCH_SIZE = 64
PATCH_LENGTH = 512
# Bump when the ids of a text change, so feature caches keyed by content never serve old ids
# (2: the end patch is bos + 63 × eos, as upstream's; it was 64 × eos).
PATCHING_VERSION = 2

BARLINES = ("|:", "::", ":|", "[|", "||", "|]", "|")
_BARLINE_RE = re.compile("(" + "|".join(re.escape(b) for b in BARLINES) + ")")
_LINES_RE = re.compile(r".*?\n|.*$")

# How each family's feature extraction prepares a file before patching it.
FAMILIES = {
    "notagen": "lines starting with % (not %%) dropped: NotaGen's CLaMP 2 extraction for CLaMP-DPO, so the "
    "%period / %composer / %instrumentation prompt lines never reach the feature",
    "clamp2": "the text as it is: CLaMP 2's own extraction (code/extract_clamp2.py)",
    "clamp3": "every 'L:1/8' line removed: CLaMP 3's patchilizer (code/utils.py) does it in training and "
    "extraction alike",
    "notagen-meter": "as notagen, and each voice-bar's length as a share of the meter written after its voice "
    "label ([V:1]$1$ when it fills the meter, $7/8$ when it is an eighth short): a bar's length is a sum over "
    "its notes that a linear patch embedding cannot read, so an evaluator of ours gets it spelled out",
}
_MARK = re.compile(r"(\[V:[^\]]+\])\$[^$\n]*\$")


def preprocess(text: str, family: str = "notagen") -> str:
    """The text a family's extraction patchilizes: its own preparation (``FAMILIES``), then ASCII only."""
    if family not in FAMILIES:
        raise ValueError(f"unknown preprocessing family {family!r} (families: {', '.join(FAMILIES)})")
    if family in ("notagen", "notagen-meter"):
        text = "".join(ln for ln in _LINES_RE.findall(text) if not ln.startswith("%") or ln.startswith("%%"))
    if family == "notagen-meter":
        text = _mark_bar_lengths(_MARK.sub(r"\1", text))
    elif family == "clamp3":
        text = text.replace("L:1/8\n", "")
    return unidecode(text)


def _mark_bar_lengths(text: str) -> str:
    """``[V:1]abc|`` → ``[V:1]$3/4$abc|``: each voice-bar's length as a share of the meter (``?``: unreadable)."""
    from evaluators.meter import bar_ratios

    ratios = iter(bar_ratios(text))
    out = []
    for line in _LINES_RE.findall(text):
        if line.startswith("[V:"):
            marks = [("?" if ratio is None else str(ratio)) for _, ratio in next(ratios, [])]
            labels = list(re.finditer(r"\[V:[^\]]+\]", line))
            if len(labels) == len(marks):  # (a voice in free meter has no length: the line stays as it is)
                for m, mark in reversed(list(zip(labels, marks))):
                    line = line[: m.end()] + f"${mark}$" + line[m.end() :]
        out.append(line)
    return "".join(out)


def split_bars(line: str) -> list[str]:
    """Split one body line into bars, each with its closing barline; text after the last barline is dropped."""
    parts = [p for p in _BARLINE_RE.split(line) if p]
    if not parts:
        return []
    if parts[0] in BARLINES and len(parts) > 1:
        parts = [parts[0] + parts[1]] + parts[2:]
    return [parts[2 * i] + parts[2 * i + 1] for i in range(len(parts) // 2)]


def _is_header(line: str) -> bool:
    return len(line) > 1 and ((line[0].isalpha() and line[1] == ":") or line.startswith("%%"))


def segments(text: str) -> list[str]:
    """The text of every patch of an already preprocessed piece (no special patches)."""
    out: list[str] = []
    for line in _LINES_RE.findall(text):
        if not line:
            continue
        if _is_header(line):
            out.append(line)
            continue
        bars = split_bars(line)
        if bars:
            bars[-1] += "\n"
            out.extend(bars)
    return out


def segment_ids(segment: str, patch_size: int = PATCH_SIZE) -> list[int]:
    """bos + character codes + eos, cut to ``patch_size`` ids and padded with 0."""
    ids = ([BOS_ID] + [ord(c) if ord(c) < VOCAB_SIZE else ord("?") for c in segment] + [EOS_ID])[:patch_size]
    return ids + [PAD_ID] * (patch_size - len(ids))


def patch_text(ids: list[int]) -> str:
    return "".join(chr(i) for i in ids if i > MASK_ID)


@dataclass(frozen=True)
class M3Patchilizer:
    """Text → (n, patch_size) ids of one preprocessing family, framed by the two special patches."""

    patch_size: int = PATCH_SIZE
    family: str = "notagen"

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown preprocessing family {self.family!r} (families: {', '.join(FAMILIES)})")

    @property
    def bos_patch(self) -> list[int]:
        return segment_ids(chr(BOS_ID) * self.patch_size, self.patch_size)

    @property
    def eos_patch(self) -> list[int]:
        return segment_ids(chr(EOS_ID) * self.patch_size, self.patch_size)

    def encode(self, text: str, special_patches: bool = True) -> list[list[int]]:
        patches = [segment_ids(s, self.patch_size) for s in segments(preprocess(text, self.family))]
        if special_patches:
            patches = [self.bos_patch] + patches + [self.eos_patch]
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
