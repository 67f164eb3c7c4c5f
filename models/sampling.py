"""Batched, KV-cached sampling from a NotaGen model.

NotaGen's own sampler re-runs the patch decoder over the whole context for every patch and the char
decoder over the whole patch for every character, one piece at a time. Here a batch of pieces advances
together: the patch decoder keeps a KV cache across patches (rows of different lengths are left-padded
and masked), the char decoder keeps a KV cache within the patch, finished rows leave the batch, and each
row draws from its own seeded generator so that a sample is reproducible from its seed.

Behaviour kept from NotaGen's inference: top-k, then top-p, then temperature on the kept probabilities;
chars after an eos inside a patch become pad; the first tune-body line is forced to begin ``[r:0/``; the
eos patch ends a piece; when the context reaches the patch length the metadata and the last half of the
body lines are re-encoded and generation goes on (stream mode).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from transformers import DynamicCache

from models.patchilizer import EOS_ID, PAD_ID, Patchilizer
from models.sampling_config import SamplingConfig

if TYPE_CHECKING:
    from models.notagen import NotaGenForCausalLM

log = logging.getLogger(__name__)


@dataclass
class Sample:
    """One generated piece."""

    prompt: list[str]
    seed: int
    text: str  # raw NotaGen form, with [r:] prefixes, prompt lines included
    finished: bool  # ended with the eos patch (False: patch budget reached)
    patches: int  # patches generated
    interleaved: str | None = None  # CLaMP-ready form (rest voices restored), None if it cannot be built
    error: str | None = None  # why `interleaved` is None
    stream_cuts: int = 0  # times the context was re-encoded at the patch length

    @property
    def chars(self) -> int:
        return len(self.text) - sum(len(ln) for ln in self.prompt)


def filter_probs(logits: torch.Tensor, top_k: int, top_p: float, temperature: float) -> torch.Tensor:
    """Next-char distribution (…, V) with NotaGen's order: top-k, top-p, then temperature."""
    probs = logits.float().softmax(-1)
    if 0 < top_k < probs.size(-1):
        kth = probs.topk(top_k, dim=-1).values[..., -1:]
        probs = probs.masked_fill(probs < kth, 0.0)
    if top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        sorted_p = sorted_p / sorted_p.sum(-1, keepdim=True)
        before = sorted_p.cumsum(-1) - sorted_p  # mass of the more likely chars
        drop = (before >= top_p).scatter(-1, order, before >= top_p)
        probs = probs.masked_fill(drop, 0.0)
    probs = probs / probs.sum(-1, keepdim=True)
    if temperature != 1.0:
        probs = torch.where(probs > 0, probs.clamp_min(1e-30).log() / temperature, float("-inf")).softmax(-1)
    return probs


@dataclass
class _Row:
    index: int
    prompt: list[str]
    seed: int
    patches: list[list[int]]
    generator: torch.Generator
    text: str = ""
    generated: int = 0
    in_body: bool = False
    forced: list[int] = field(default_factory=list)  # chars of an open patch left by a stream cut
    cut_lines: int | None = None
    finished: bool = False
    budget_hit: bool = False
    stream_cuts: int = 0


class Sampler:
    """Generates pieces from prompts; `generate` is the one entry point."""

    def __init__(
        self, model: NotaGenForCausalLM, config: SamplingConfig | None = None, device: str | torch.device | None = None
    ):
        self.config = config or SamplingConfig()
        self.device = torch.device(device) if device else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        mc = model.config
        self.patchilizer = Patchilizer(patch_size=mc.patch_size, patch_length=mc.patch_length)
        self.size = mc.patch_size

    # ------------------------------------------------------------------ public

    @torch.inference_mode()
    def generate(
        self, prompts: list[list[str]], seeds: list[int], progress: Callable[[Sample], None] | None = None
    ) -> list[Sample]:
        """One piece per (prompt lines, seed), in order. ``progress`` is called with each finished Sample."""
        if len(prompts) != len(seeds):
            raise ValueError("one seed per prompt")
        out: list[Sample] = []
        bs = self.config.batch_size
        for start in range(0, len(prompts), bs):
            for sample in self._generate_batch(prompts[start : start + bs], seeds[start : start + bs]):
                out.append(sample)
                if progress:
                    progress(sample)
        return out

    # ------------------------------------------------------------------ one batch

    def _generate_batch(self, prompts: list[list[str]], seeds: list[int]) -> list[Sample]:
        rows = []
        for i, (lines, seed) in enumerate(zip(prompts, seeds)):
            lines = [ln if ln.endswith("\n") else ln + "\n" for ln in lines]
            rows.append(
                _Row(
                    i,
                    lines,
                    seed,
                    self.patchilizer.encode_prompt(lines),
                    torch.Generator().manual_seed(int(seed)),
                    text="".join(lines),
                )
            )
        active = list(rows)
        cache = mask = None
        rebuild = True
        new_patches: torch.Tensor | None = None
        while active:
            if rebuild or not self.config.use_cache:
                h_last, cache, mask = self._encode_all(active)
                rebuild = False
            else:
                h_last, mask = self._encode_step(new_patches, cache, mask)
            chars = self._spell(h_last, active)
            keep, streamed = [], False
            for k, row in enumerate(active):
                streamed |= self._advance(row, chars[k].tolist())
                if not row.finished:
                    keep.append(k)
            if len(keep) < len(active):
                index = torch.tensor(keep, dtype=torch.long, device=self.device)
                if cache is not None and keep:
                    cache.batch_select_indices(index)
                mask = mask[index]
                chars = chars[index]
                active = [active[k] for k in keep]
            new_patches = chars[:, None, :]
            rebuild = rebuild or streamed
        return [self._finish(row) for row in rows]

    def _encode_all(self, rows: list[_Row]) -> tuple[torch.Tensor, DynamicCache | None, torch.Tensor]:
        """Patch-level pass over every row's whole context (left-padded); returns h of each row's last patch."""
        length = max(len(r.patches) for r in rows)
        patches = torch.full((len(rows), length, self.size), PAD_ID, dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.long)
        for k, row in enumerate(rows):
            patches[k, length - len(row.patches) :] = torch.tensor(row.patches)
            mask[k, length - len(row.patches) :] = 1
        patches, mask = patches.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        cache = DynamicCache() if self.config.use_cache else None
        hidden, cache = self.model.model.encode_patches(
            patches, mask, positions, cache=cache, use_cache=self.config.use_cache
        )
        return hidden[:, -1], cache, mask

    def _encode_step(
        self, new_patches: torch.Tensor, cache: DynamicCache, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        positions = mask.sum(1, keepdim=True)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        hidden, _ = self.model.model.encode_patches(new_patches, mask, positions, cache=cache, use_cache=True)
        return hidden[:, -1], mask

    def _spell(self, h_last: torch.Tensor, rows: list[_Row]) -> torch.Tensor:
        """Sample the next patch of every row: (A, 16) ids, pad after an eos."""
        cfg, model = self.config, self.model
        n = len(rows)
        chars = torch.full((n, self.size), PAD_ID, dtype=torch.long, device=self.device)
        ended = torch.zeros(n, dtype=torch.bool, device=self.device)
        cache = DynamicCache() if cfg.use_cache else None
        step_input = h_last[:, None, :]
        for j in range(self.size):
            if cfg.use_cache:
                hidden = model.model.char_decoder(
                    inputs_embeds=step_input, cache=cache, use_cache=True
                ).last_hidden_state
            else:
                hidden = model.model.spell(h_last, chars[:, :j])
            logits = model.lm_head(hidden[:, -1]).float()
            forced = [self._forced_char(row, chars[k], j) for k, row in enumerate(rows)]
            # A row draws only when it truly samples, so its generator's stream (hence its text) does not
            # depend on which other rows share the batch.
            needs = [f is None and not bool(ended[k]) for k, f in enumerate(forced)]
            token = self._draw(logits, rows, needs)
            for k, f in enumerate(forced):
                if f is not None:
                    token[k] = f
            token = token.masked_fill(ended, PAD_ID)
            chars[:, j] = token
            ended |= token == EOS_ID
            if bool(ended.all()):
                break
            step_input = model.model.char_decoder.wte(token)[:, None, :]
        return chars.cpu()

    def _draw(self, logits: torch.Tensor, rows: list[_Row], needs: list[bool]) -> torch.Tensor:
        cfg = self.config
        if cfg.top_k == 1:
            return logits.argmax(-1)
        probs = filter_probs(logits, cfg.top_k, cfg.top_p, cfg.temperature).cpu()
        token = torch.full((len(rows),), PAD_ID, dtype=torch.long)
        for k, row in enumerate(rows):
            if needs[k]:
                token[k] = torch.multinomial(probs[k], 1, generator=row.generator)[0]
        return token.to(self.device)

    def _forced_char(self, row: _Row, chars: torch.Tensor, j: int) -> int | None:
        if j < len(row.forced):
            return row.forced[j]
        if not row.in_body and j in (3, 4) and chars[:3].tolist() == [ord(c) for c in "[r:"]:
            return ord("0" if j == 3 else "/")  # the first body line is line 0, as NotaGen forces it
        return None

    # ------------------------------------------------------------------ bookkeeping

    def _advance(self, row: _Row, patch: list[int]) -> bool:
        """Append a sampled patch to a row; returns True when the row's context was re-encoded (stream)."""
        if self.patchilizer.is_eos_patch(patch):
            row.finished = True
            return False
        skip = len(row.forced)
        row.forced = []
        text = self.patchilizer.patch_text(patch)
        if not row.in_body and text.startswith(("[r:", "[V:")):
            row.in_body = True
        row.text += text[skip:] if skip else text
        row.patches.append(patch)
        row.generated += 1
        if row.generated >= self.config.max_patches:
            row.finished = row.budget_hit = True
            return False
        if len(row.patches) >= self.patchilizer.patch_length:
            self._stream_cut(row)
            return True
        return False

    def _stream_cut(self, row: _Row) -> None:
        """Keep the metadata and the last half of the body lines (fixed at the first cut), as NotaGen does."""
        lines = row.text.split("\n")
        start = next((i for i, ln in enumerate(lines) if ln.startswith(("[r:", "[V:"))), None)
        if start is None or start == len(lines) - 1:
            row.finished = row.budget_hit = True
            return
        meta = [ln + "\n" for ln in lines[:start]]
        body = [ln + "\n" for ln in lines[start:-1]] + ([lines[-1]] if lines[-1] else [])
        if row.cut_lines is None:
            row.cut_lines = max(1, len(body) // 2)
        patches = self.patchilizer.encode_generate("".join(meta + body[-row.cut_lines :]))
        last = patches[-1]
        if len(last) < self.size:  # open last patch: its chars are forced at the start of the next one
            row.forced = list(last)
            patches = patches[:-1]
        row.patches = patches
        row.stream_cuts += 1
        log.debug("row %d: stream cut to %d patches", row.index, len(patches))

    def _finish(self, row: _Row) -> Sample:
        from base.abc.interleave import restore_rest_voices

        text = row.text
        sample = Sample(
            prompt=row.prompt,
            seed=row.seed,
            text=text,
            finished=not row.budget_hit,
            patches=row.generated,
            stream_cuts=row.stream_cuts,
        )
        body = text if text.endswith("\n") else text[: text.rfind("\n") + 1]  # whole lines only
        try:
            sample.interleaved = "".join(restore_rest_voices(body.split("\n")))
        except Exception as err:
            sample.error = f"{type(err).__name__}: {err}"
        return sample
