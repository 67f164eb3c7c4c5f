"""A transformers tokenizer over NotaGen's patches, so TRL's trainers can tokenize ABC text.

TRL tokenizes ``prompt`` and ``prompt + completion`` separately and takes the completion where the two
id lists part. Here a text becomes its flat patch ids (16 per patch): the bos patch, one or more patches
per metadata line, the tune body cut into bars and bars into patches, and — when the text ends with the
eos character (``\\x02``, which TRL appends as ``eos_token``) — the eos patch. Prompt lines are metadata
lines patched one by one, so the ids of a prompt are always a prefix of the ids of prompt + piece, and
the completion starts on a patch boundary.

No streaming cut and no ``[r:i/n]`` line positions are added: DPO scores the text a sampler produced
(which already carries its line positions); a piece longer than the context is cut by TRL's
``max_length`` (keep the start), which callers set to a multiple of 16.
"""

from __future__ import annotations

import json
import os
from typing import Any

from transformers import BatchEncoding, PreTrainedTokenizer

from models.patchilizer import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE, Patchilizer

EOS_CHAR = chr(EOS_ID)


def _body_start(lines: list[str]) -> int:
    return next((i for i, ln in enumerate(lines) if ln.startswith(("[V:", "[r:"))), len(lines))


class NotaGenTokenizer(PreTrainedTokenizer):
    """ABC text ⇄ flat NotaGen ids (characters by ``ord``; pad 0, bos 1, eos 2)."""

    model_input_names = ["input_ids", "attention_mask"]
    vocab_files_names = {"vocab_file": "notagen_tokenizer.json"}

    def __init__(self, patch_size: int = 16, vocab_file: str | None = None, **kwargs: Any):
        if vocab_file and os.path.isfile(vocab_file):
            with open(vocab_file, encoding="utf-8") as f:
                patch_size = int(json.load(f).get("patch_size", patch_size))
        self.patch_size = patch_size
        self.patchilizer = Patchilizer(patch_size=patch_size, stream=False)
        kwargs.setdefault("pad_token", chr(PAD_ID))
        kwargs.setdefault("bos_token", chr(BOS_ID))
        kwargs.setdefault("eos_token", EOS_CHAR)
        super().__init__(**kwargs)

    # ------------------------------------------------------------------ vocabulary (one char = one id)

    @property
    def vocab_size(self) -> int:
        return VOCAB_SIZE

    def get_vocab(self) -> dict[str, int]:
        return {chr(i): i for i in range(VOCAB_SIZE)}

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        return list(text)

    def _convert_token_to_id(self, token: str) -> int:
        return ord(token) if len(token) == 1 and ord(token) < VOCAB_SIZE else PAD_ID

    def _convert_id_to_token(self, index: int) -> str:
        return chr(index)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(tokens)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        path = os.path.join(
            save_directory, (filename_prefix + "-" if filename_prefix else "") + self.vocab_files_names["vocab_file"]
        )
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"patch_size": self.patch_size, "vocab_size": VOCAB_SIZE}, f)
        return (path,)

    # ------------------------------------------------------------------ text ⇄ patch ids

    def patch_ids(self, text: str) -> list[list[int]]:
        """Patches of a piece text (see the module docstring)."""
        ends = text.endswith(EOS_CHAR)
        text = text.rstrip(EOS_CHAR)
        lines = [ln + "\n" for ln in text.split("\n")]
        if lines and lines[-1] == "\n":
            lines = lines[:-1]
        if lines and not text.endswith("\n"):
            lines[-1] = lines[-1][:-1]
        start = _body_start(lines)
        p = self.patchilizer
        patches = [p.bos_patch] + [x for ln in lines[:start] for x in p.split_patches(ln)]
        patches += [x for bar in p.split_bars(lines[start:]) for x in p.split_patches(bar)]
        if ends:
            patches.append(p.eos_patch)
        return p.to_ids(patches)

    def encode_piece(self, text: str) -> list[int]:
        return [i for patch in self.patch_ids(text) for i in patch]

    def __call__(self, text: str | list[str] | None = None, **kwargs: Any) -> BatchEncoding:
        """Flat ids of one text or of each text of a list (no padding: collators pad)."""
        if isinstance(text, (list, tuple)):
            rows = [self.encode_piece(t) for t in text]
            return BatchEncoding({"input_ids": rows, "attention_mask": [[1] * len(x) for x in rows]})
        ids = self.encode_piece(text or "")
        return BatchEncoding({"input_ids": ids, "attention_mask": [1] * len(ids)})

    def decode(self, token_ids: Any, skip_special_tokens: bool = True, **kwargs: Any) -> str:
        ids = token_ids.tolist() if hasattr(token_ids, "tolist") else list(token_ids)
        if ids and isinstance(ids[0], list):
            ids = [i for row in ids for i in row]
        size = self.patch_size
        return self.patchilizer.decode([ids[i : i + size] for i in range(0, len(ids), size)])
