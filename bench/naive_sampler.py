"""The reference for bench/sample.py: NotaGen's own sampling method, on our model's weights.

One piece at a time; for every patch the patch decoder runs over the whole context, and for every
character the char decoder runs over the whole patch so far (no KV cache anywhere). Filtering is the
same top-k → top-p → temperature as ours, drawn with numpy as NotaGen does. Kept deliberately plain:
it is the baseline our sampler is measured against, not a code path of the product.
"""

from __future__ import annotations

import numpy as np
import torch

from models.patchilizer import Patchilizer
from models.sampling import filter_probs


@torch.inference_mode()
def naive_sample(
    model: torch.nn.Module,
    prompt_lines: list[str],
    seed: int,
    max_patches: int,
    top_k: int = 9,
    top_p: float = 0.9,
    temperature: float = 1.2,
) -> str:
    rng = np.random.default_rng(seed)
    pz = Patchilizer(patch_size=model.config.patch_size, patch_length=model.config.patch_length)
    patches = pz.encode_prompt(prompt_lines)
    text = "".join(prompt_lines)
    device = next(model.parameters()).device
    for _ in range(max_patches):
        context = torch.tensor([patches[-model.config.patch_length :]], device=device)
        h_last = model.model.encode_patches(context)[0][:, -1]  # full recompute per patch
        chars: list[int] = []
        for _ in range(pz.patch_size):
            prefix = torch.tensor([chars], dtype=torch.long, device=device)
            hidden = model.model.spell(h_last, prefix)  # full recompute per char
            probs = filter_probs(model.lm_head(hidden[:, -1]), top_k, top_p, temperature)[0].double().cpu().numpy()
            chars.append(int(rng.choice(len(probs), p=probs / probs.sum())))
        if 2 in chars:
            chars = chars[: chars.index(2) + 1] + [0] * (pz.patch_size - chars.index(2) - 1)
        if pz.is_eos_patch(chars):
            break
        patches.append(chars)
        text += pz.patch_text(chars)
    return text
