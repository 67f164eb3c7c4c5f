"""NotaGen's patchilizer: ABC text ⇄ patches of 16 character ids, exactly as NotaGen encodes them.

Vocabulary: 128 ids (characters by ``ord``), with 0 = pad, 1 = bos, 2 = eos. A piece is:

    bos patch (15×bos + eos)
    one or more patches per metadata line (each line keeps its newline)
    the tune body split into bars, each bar into patches of 16
    eos patch (bos + 15×eos)

A text whose length is not a multiple of 16 gets one eos character before it is cut into patches, so a
short final patch reads ``...<eos><pad><pad>``; a text of exactly 16·k characters gets none (NotaGen's
rule, kept so ids match its checkpoints). In stream mode every tune-body line is prefixed with
``[r:i/n]`` (its index and the number of lines after it), and a piece longer than ``patch_length``
patches is cut at a line boundary (head, tail or a random middle start) before truncation.
"""

from __future__ import annotations

import bisect
import random
import re
from dataclasses import dataclass

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
VOCAB_SIZE = 128
BAR_DELIMITERS = ("|:", "::", ":|", "[|", "||", "|]", "|")
_BAR_SPLIT = re.compile("(" + "|".join(map(re.escape, BAR_DELIMITERS)) + ")")


@dataclass(frozen=True)
class Patchilizer:
    patch_size: int = 16
    patch_length: int = 2048
    stream: bool = True

    # ------------------------------------------------------------------ text → patch strings

    @property
    def bos_patch(self) -> str:
        return chr(BOS_ID) * (self.patch_size - 1) + chr(EOS_ID)

    @property
    def eos_patch(self) -> str:
        return chr(BOS_ID) + chr(EOS_ID) * (self.patch_size - 1)

    def split_patches(self, text: str, generate_last: bool = False) -> list[str]:
        """Cut a line or bar into patch strings; an eos char closes text not filling its last patch."""
        if not generate_last and len(text) % self.patch_size != 0:
            text += chr(EOS_ID)
        return [text[i : i + self.patch_size] for i in range(0, len(text), self.patch_size)]

    @staticmethod
    def split_bars(body_lines: list[str]) -> list[str]:
        """Split tune-body lines into bars the way NotaGen does.

        Each barline is attached to the text that *follows* it (``a|b|`` → ``a``, ``|b``, ``|``), and a
        trailing piece without a voice tag (the final ``|\\n``) is merged into the bar before it. A line
        whose pieces cannot be paired ends the split, as in NotaGen (its try/except stops there).
        """
        bars: list[str] = []
        for line in body_lines:
            pieces = [p for p in _BAR_SPLIT.split(line) if p]
            if len(pieces) == 1:
                bars += pieces
                continue
            start = 0 if pieces[0] in BAR_DELIMITERS else 1
            if (len(pieces) - start) % 2:
                break  # NotaGen's pairing raises IndexError here and keeps the bars found so far
            line_bars = pieces[:start] + [pieces[i] + pieces[i + 1] for i in range(start, len(pieces), 2)]
            if "V" not in line_bars[-1]:
                if len(line_bars) < 2:
                    break  # NotaGen indexes line_bars[-2] here, raises, and stops
                line_bars[-2] += line_bars[-1]
                line_bars = line_bars[:-1]
            bars += line_bars
        return bars

    def _lines(self, abc_text: str) -> list[str]:
        return [ln + "\n" for ln in abc_text.split("\n") if ln]

    @staticmethod
    def add_line_positions(body_lines: list[str]) -> list[str]:
        """Prefix each tune-body line with ``[r:i/n]``: its index and the number of lines after it."""
        n = len(body_lines)
        return [f"[r:{i}/{n - i - 1}]{line}" for i, line in enumerate(body_lines)]

    def train_patches(
        self, abc_text: str, rng: random.Random | None = None, add_special_patches: bool = True, cut: bool = True
    ) -> list[str]:
        """Patch strings of a training piece (NotaGen's ``encode_train``, before ids)."""
        rng = rng or random.Random(0)
        lines = self._lines(abc_text)
        body_start = next((i for i, ln in enumerate(lines) if "[V:" in ln), -1)
        meta_lines, body_lines = lines[:body_start], lines[body_start:]
        if self.stream:
            body_lines = self.add_line_positions(body_lines)
        meta = [p for ln in meta_lines for p in self.split_patches(ln)]
        body = [p for bar in self.split_bars(body_lines) for p in self.split_patches(bar)]
        if add_special_patches:
            meta = [self.bos_patch] + meta
            body = body + [self.eos_patch]
        patches = meta + body
        if self.stream and len(meta) + len(body) > self.patch_length:
            patches = self._stream_cut(meta, body, body_lines, rng, add_special_patches)
        return patches[: self.patch_length] if cut else patches

    def _stream_cut(
        self, meta: list[str], body: list[str], body_lines: list[str], rng: random.Random, add_special_patches: bool
    ) -> list[str]:
        # A cut may start at the beginning of any body line (patch index after a patch holding "\n");
        # only starts early enough to leave patch_length patches of music count (NotaGen's bisect).
        starts = [0] + [i + 1 for i, p in enumerate(body) if "\n" in p]
        overflow = len(meta) + len(body) - self.patch_length
        starts = starts[: bisect.bisect_left(starts, overflow) + 1]
        choices = (
            ["head"] if len(starts) == 1 else (["head", "tail"] if len(starts) == 2 else ["head", "tail", "middle"])
        )
        choice = rng.choice(choices)
        if choice == "head":
            return meta + body
        line_index = len(starts) - 1 if choice == "tail" else rng.choice(range(1, len(starts) - 1))
        tail = [p for bar in self.split_bars(body_lines[line_index:]) for p in self.split_patches(bar)]
        if add_special_patches:
            tail = tail + [self.eos_patch]
        return meta + tail

    def generate_patches(self, abc_text: str) -> list[str]:
        """Patch strings of a partial piece to continue (NotaGen's ``encode_generate``, before ids).

        The last bar is left open (no eos char), so the model continues it.
        """
        raw = [ln for ln in abc_text.split("\n") if ln]
        body_start = next((i for i, ln in enumerate(raw) if ln.startswith(("[V:", "[r:"))), len(raw))
        meta_lines = [ln + "\n" for ln in raw[:body_start]]
        body_raw = raw[body_start:]
        if body_raw and not abc_text.endswith("\n"):
            body_lines = [ln + "\n" for ln in body_raw[:-1]] + [body_raw[-1]]
        else:
            body_lines = [ln + "\n" for ln in body_raw]
        meta = [self.bos_patch] + [p for ln in meta_lines for p in self.split_patches(ln)]
        bars = self.split_bars(body_lines)
        body = [p for bar in bars[:-1] for p in self.split_patches(bar)]
        if bars:
            body += self.split_patches(bars[-1], generate_last=True)
        return (meta + body)[: self.patch_length]

    # ------------------------------------------------------------------ patch strings ⇄ ids

    def to_ids(self, patches: list[str], pad_last_open: bool = True) -> list[list[int]]:
        """Ids of patch strings, each padded to patch_size (an open last patch stays short if asked)."""
        out = []
        for i, p in enumerate(patches):
            ids = [ord(c) for c in p]
            if any(x >= VOCAB_SIZE for x in ids):
                bad = next(c for c in p if ord(c) >= VOCAB_SIZE)
                raise ValueError(f"character {bad!r} is outside NotaGen's 128-id vocabulary (unidecode the text)")
            open_last = i == len(patches) - 1 and len(p) < self.patch_size and p[-1] != chr(EOS_ID)
            if not (open_last and not pad_last_open):
                ids += [PAD_ID] * (self.patch_size - len(ids))
            out.append(ids)
        return out

    def encode_train(self, abc_text: str, rng: random.Random | None = None) -> list[list[int]]:
        return self.to_ids(self.train_patches(abc_text, rng))

    def encode_generate(self, abc_text: str) -> list[list[int]]:
        return self.to_ids(self.generate_patches(abc_text), pad_last_open=False)

    def encode_prompt(self, prompt_lines: list[str]) -> list[list[int]]:
        """Ids of the bos patch and the prompt lines (``%period``...), as NotaGen's inference starts."""
        patches = [self.bos_patch] + [p for ln in prompt_lines for p in self.split_patches(ln)]
        return self.to_ids(patches)

    @staticmethod
    def patch_text(ids: list[int]) -> str:
        """The characters of one patch up to its eos; pad and bos ids are not characters."""
        chars = []
        for i in ids:
            if i == EOS_ID:
                break
            if i > EOS_ID:
                chars.append(chr(i))
        return "".join(chars)

    def decode(self, patches: list[list[int]]) -> str:
        return "".join(self.patch_text(p) for p in patches)

    @staticmethod
    def is_eos_patch(ids: list[int]) -> bool:
        return len(ids) > 1 and ids[0] == BOS_ID and ids[1] == EOS_ID
