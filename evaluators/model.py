"""The CLaMP-style evaluator: an M3 music encoder, a small text encoder, and a shared feature space.

Music side as CLaMP 2's M3: a one-hot 64×128 patch → Linear → BERT encoder over up to 512 patches; a
GPT-2 char decoder rebuilds masked patches during pre-training (its first input is the encoder's output
for the patch). Text side: CLaMP 2 uses XLM-R, which cannot be downloaded here, so a small
character-level BERT is trained instead. Each side is average-pooled over its mask and projected; the
contrastive loss is the CLIP one (L2-normalised features, learnable temperature).

Parameter names follow CLaMP 2's modules (``patch_embedding``, ``base``) so that its checkpoints map by
prefix (see evaluators/import_clamp.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel, PretrainedConfig, PreTrainedModel

from evaluators.config import SIZES
from evaluators.m3_patchilizer import BOS_ID, EOS_ID, PAD_ID, PATCH_LENGTH, PATCH_SIZE, VOCAB_SIZE

TEXT_LENGTH = 128  # characters of metadata text (CLaMP 2: 128 XLM-R tokens)


class ClampConfig(PretrainedConfig):
    model_type = "clampdpo_evaluator"

    def __init__(
        self,
        hidden_size: int = 768,
        num_layers: int = 12,
        decoder_layers: int = 3,
        text_layers: int = 6,
        text_hidden_size: int = 768,
        projection_size: int = 768,
        patch_size: int = PATCH_SIZE,
        patch_length: int = PATCH_LENGTH,
        text_length: int = TEXT_LENGTH,
        dropout: float = 0.1,
        preprocess: str = "notagen",
        **kwargs,
    ):
        kwargs.setdefault("tie_word_embeddings", True)  # the char decoder's LM head is its embedding
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.decoder_layers = decoder_layers
        self.text_layers = text_layers
        self.text_hidden_size = text_hidden_size
        self.projection_size = projection_size
        self.patch_size = patch_size
        self.patch_length = patch_length
        self.text_length = text_length
        self.dropout = dropout
        # how a text is prepared before patching (m3_patchilizer.FAMILIES): what the weights were trained on
        self.preprocess = preprocess

    @classmethod
    def from_size(cls, size: str, **overrides) -> ClampConfig:
        if size not in SIZES:
            raise ValueError(f"evaluator size {size!r}: expected one of {', '.join(SIZES)}")
        return cls(**{**SIZES[size].__dict__, **overrides})

    def music_bert(self) -> BertConfig:
        # vocab 1: CLaMP 2 feeds inputs_embeds, the word embedding is never used
        return BertConfig(
            vocab_size=1,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=max(1, self.hidden_size // 64),
            intermediate_size=self.hidden_size * 4,
            max_position_embeddings=self.patch_length,
            hidden_dropout_prob=self.dropout,
            attention_probs_dropout_prob=self.dropout,
        )

    def char_decoder(self) -> GPT2Config:
        return GPT2Config(
            vocab_size=VOCAB_SIZE,
            n_positions=self.patch_size,
            n_embd=self.hidden_size,
            n_layer=self.decoder_layers,
            n_head=max(1, self.hidden_size // 64),
            n_inner=self.hidden_size * 4,
            resid_pdrop=self.dropout,
            embd_pdrop=self.dropout,
            attn_pdrop=self.dropout,
            bos_token_id=BOS_ID,
            eos_token_id=EOS_ID,
            pad_token_id=PAD_ID,
        )

    def text_bert(self) -> BertConfig:
        return BertConfig(
            vocab_size=VOCAB_SIZE,
            hidden_size=self.text_hidden_size,
            num_hidden_layers=self.text_layers,
            num_attention_heads=max(1, self.text_hidden_size // 64),
            intermediate_size=self.text_hidden_size * 4,
            max_position_embeddings=self.text_length,
            hidden_dropout_prob=self.dropout,
            attention_probs_dropout_prob=self.dropout,
        )


class M3PatchEncoder(nn.Module):
    """One-hot patches → Linear → BERT."""

    def __init__(self, config: ClampConfig):
        super().__init__()
        self.patch_size = config.patch_size
        self.patch_embedding = nn.Linear(config.patch_size * VOCAB_SIZE, config.hidden_size)
        self.base = BertModel(config.music_bert(), add_pooling_layer=False)

    def embed(self, patches: torch.Tensor) -> torch.Tensor:
        # A gather of the weight's columns equals one-hot @ Wᵀ without building the (…, 8192) one-hot.
        offsets = torch.arange(self.patch_size, device=patches.device) * VOCAB_SIZE
        columns = F.embedding(patches + offsets, self.patch_embedding.weight.t())
        return columns.sum(-2) + self.patch_embedding.bias

    def forward(self, patches: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.base(inputs_embeds=self.embed(patches), attention_mask=mask).last_hidden_state


class M3CharDecoder(nn.Module):
    """Rebuilds a patch char by char from the encoder's output for it (in place of the bos embedding)."""

    def __init__(self, config: ClampConfig):
        super().__init__()
        self.base = GPT2LMHeadModel(config.char_decoder())

    def forward(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(n, H) features, (n, patch_size) target ids → mean NLL per target char."""
        embeds = self.base.transformer.wte(targets)
        embeds = torch.cat([features[:, None], embeds[:, 1:]], dim=1)
        mask = (targets != PAD_ID).long()
        labels = targets.masked_fill(mask == 0, -100)
        return self.base(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss


class TextEncoder(nn.Module):
    """Character-level BERT over the piece's metadata text."""

    def __init__(self, config: ClampConfig):
        super().__init__()
        self.base = BertModel(config.text_bert(), add_pooling_layer=False)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.base(input_ids=ids, attention_mask=mask).last_hidden_state


def average_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)


@dataclass
class ContrastiveOutput:
    loss: torch.Tensor
    logits_per_text: torch.Tensor
    text_to_music_accuracy: torch.Tensor
    music: torch.Tensor  # the pieces' projected features, before normalisation (what scores are made of)
    negative_music: torch.Tensor | None = None  # the same for the hard negatives


class ClampModel(PreTrainedModel):
    config_class = ClampConfig
    base_model_prefix = "music_encoder"
    # GPT-2 ties its LM head to the char embedding; saved once, re-tied on load
    _tied_weights_keys = {"music_decoder.base.lm_head.weight": "music_decoder.base.transformer.wte.weight"}
    _supports_sdpa = True

    def __init__(self, config: ClampConfig):
        super().__init__(config)
        self.music_encoder = M3PatchEncoder(config)
        self.music_decoder = M3CharDecoder(config)
        self.music_proj = nn.Linear(config.hidden_size, config.projection_size)
        self.text_encoder = TextEncoder(config)
        self.text_proj = nn.Linear(config.text_hidden_size, config.projection_size)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, ClampModel):
            with torch.no_grad():
                module.logit_scale.fill_(math.log(1 / 0.07))
                # A patch embedding sums patch_size one-hot columns, so it starts √patch_size (8×) larger than
                # a position embedding at BERT's std: the position is drowned out and the pooled feature barely
                # changes when bars are reordered or moved between voices (measured: cosine 0.9998 to the
                # original). Positions start at the patches' scale instead. (Shrinking the patch embedding does
                # the same for the forward pass but leaves near-identical pieces on a long loss plateau.)
                positions = module.music_encoder.base.embeddings.position_embeddings.weight
                positions.normal_(std=0.02 * math.sqrt(module.config.patch_size))

    # ------------------------------------------------------------------ music side

    def masked_patch_loss(
        self, inputs: torch.Tensor, mask: torch.Tensor, selected: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """M3's pre-training loss: rebuild the selected (masked / shuffled / kept) patches."""
        hidden = self.music_encoder(inputs, mask)
        pick = selected.bool()
        return self.music_decoder(hidden[pick], targets[pick])

    def music_features(self, patches: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pooled and projected music embedding of each (≤ patch_length) window: (B, projection_size)."""
        return self.music_proj(average_pool(self.music_encoder(patches, mask), mask))

    def text_features(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.text_proj(average_pool(self.text_encoder(ids, mask), mask))

    def contrastive(
        self,
        text_ids: torch.Tensor,
        text_mask: torch.Tensor,
        patches: torch.Tensor,
        patch_mask: torch.Tensor,
        negatives: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> ContrastiveOutput:
        """Symmetric InfoNCE; texts that are identical in the batch count as positives for each other.

        ``negatives`` (patches, mask) are extra music columns that match no text (corrupted copies): they
        only enter the text→music direction, as hard negatives.
        """
        t = F.normalize(self.text_features(text_ids, text_mask), dim=-1)
        raw = self.music_features(patches, patch_mask)
        m = F.normalize(raw, dim=-1)
        raw_negatives = None
        scale = self.logit_scale.clamp(max=math.log(100)).exp()
        logits = scale * t @ m.t()
        same = (text_ids[:, None, :] == text_ids[None, :, :]).all(-1).float()
        target = same / same.sum(1, keepdim=True)
        text_logits = logits
        if negatives is not None:
            raw_negatives = self.music_features(*negatives)
            n = F.normalize(raw_negatives, dim=-1)
            text_logits = torch.cat([logits, scale * t @ n.t()], dim=1)
            target = torch.cat([target, torch.zeros(len(t), len(n), device=target.device)], dim=1)
        loss = 0.5 * (
            torch.sum(-target * F.log_softmax(text_logits, 1), 1).mean()
            + torch.sum(-(same / same.sum(0, keepdim=True)).t() * F.log_softmax(logits.t(), 1), 1).mean()
        )
        best = text_logits.argmax(1, keepdim=True)
        accuracy = (target.gather(1, best) > 0).float().mean()
        return ContrastiveOutput(loss, text_logits, accuracy, raw, raw_negatives)


def text_ids(texts: list[str], length: int = TEXT_LENGTH) -> tuple[torch.Tensor, torch.Tensor]:
    """Character ids of metadata texts (ASCII; bos/eos framed), padded to the longest."""
    from unidecode import unidecode

    rows = [[1] + [min(ord(c), VOCAB_SIZE - 1) for c in unidecode(t)][: length - 2] + [2] for t in texts]
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask
