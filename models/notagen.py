"""NotaGen's two-level decoder as a transformers model.

    patches (B, P, 16) ──one-hot 16×128──▶ Linear(2048 → H) ──▶ patch GPT-2 ──▶ h_0 … h_{P-1}
    patch i+1 is spelled by the char GPT-2 from [h_i, c_0 … c_14] → predictions of c_0 … c_15

The log-likelihood of a piece is the sum of the char log-probs of every patch after the bos patch, pad
chars (id 0, after a patch's eos) not counted: NotaGen's definition, and what DPO compares.

Two views of the same computation:

* **hierarchical** (`NotaGenForCausalLM.patch_log_probs`): patches in, per-piece log-likelihood out, the
  way NotaGen's training code runs it (valid patches gathered, each spelled in a 17-slot char sequence);
* **flat** (`forward(input_ids=...)`): the piece as one row of 16·P character ids, as TRL and
  `generate` see a causal LM. The backbone returns a hidden state per character position t that predicts
  character t+1 (zeros where nothing is predicted: inside the bos patch), and `lm_head` (tied to the char
  embedding, as NotaGen's GPT2LMHeadModel) maps it to logits. TRL's fused head therefore scores exactly
  the hierarchical log-probs, provided the labels mask pad chars (see `completion_labels`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    GenerationMixin,
    GPT2Config,
    GPT2Model,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutput, CausalLMOutput

from models.patchilizer import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE
from models.sizes import SIZES


class NotaGenConfig(PretrainedConfig):
    """Sizes of the two decoders; heads are hidden/64 as in NotaGen unless given."""

    model_type = "notagen"

    def __init__(
        self,
        patch_size: int = 16,
        patch_length: int = 2048,
        patch_num_layers: int = 12,
        char_num_layers: int = 3,
        hidden_size: int = 768,
        num_attention_heads: int | None = None,
        vocab_size: int = VOCAB_SIZE,
        dropout: float = 0.1,
        initializer_range: float = 0.02,
        layer_norm_epsilon: float = 1e-5,
        attn_implementation_name: str = "sdpa",
        **kwargs,
    ):
        kwargs.setdefault("pad_token_id", PAD_ID)
        kwargs.setdefault("bos_token_id", BOS_ID)
        kwargs.setdefault("eos_token_id", EOS_ID)
        kwargs.setdefault("tie_word_embeddings", True)
        super().__init__(**kwargs)
        if hidden_size % 64 and num_attention_heads is None:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of 64; give num_attention_heads")
        self.patch_size = patch_size
        self.patch_length = patch_length
        self.patch_num_layers = patch_num_layers
        self.char_num_layers = char_num_layers
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads or hidden_size // 64
        self.vocab_size = vocab_size
        self.dropout = dropout
        self.initializer_range = initializer_range
        self.layer_norm_epsilon = layer_norm_epsilon
        self.attn_implementation_name = attn_implementation_name

    @classmethod
    def from_size(cls, size: str, **overrides) -> NotaGenConfig:
        if size not in SIZES:
            raise ValueError(f"unknown model size {size!r} (sizes: {', '.join(SIZES)})")
        return cls(**{**SIZES[size], **overrides})

    def _gpt2(self, layers: int, positions: int, vocab: int) -> GPT2Config:
        cfg = GPT2Config(
            n_layer=layers,
            n_embd=self.hidden_size,
            n_head=self.num_attention_heads,
            n_positions=positions,
            vocab_size=vocab,
            resid_pdrop=self.dropout,
            embd_pdrop=self.dropout,
            attn_pdrop=self.dropout,
            layer_norm_epsilon=self.layer_norm_epsilon,
            initializer_range=self.initializer_range,
            use_cache=True,
            bos_token_id=BOS_ID if vocab > BOS_ID else None,
            eos_token_id=EOS_ID if vocab > EOS_ID else None,
        )
        cfg._attn_implementation = self.attn_implementation_name
        return cfg

    def patch_config(self) -> GPT2Config:
        # vocab 1: the patch decoder only ever sees inputs_embeds (NotaGen's setting, kept for shapes)
        return self._gpt2(self.patch_num_layers, self.patch_length, 1)

    def char_config(self) -> GPT2Config:
        return self._gpt2(self.char_num_layers, self.patch_size + 1, self.vocab_size)


def completion_labels(input_ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Labels for the flat view: -100 outside the completion and on pad chars (NotaGen does not score them)."""
    return input_ids.masked_fill((completion_mask == 0) | (input_ids == PAD_ID), -100)


class NotaGenPreTrainedModel(PreTrainedModel):
    config_class = NotaGenConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False
    _no_split_modules = ["GPT2Block"]
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class NotaGenModel(NotaGenPreTrainedModel):
    """The backbone: patch decoder + char decoder transformer (no LM head)."""

    def __init__(self, config: NotaGenConfig):
        super().__init__(config)
        self.patch_embedding = nn.Linear(config.patch_size * config.vocab_size, config.hidden_size)
        self.patch_decoder = GPT2Model(config.patch_config())
        self.char_decoder = GPT2Model(config.char_config())
        self.post_init()

    # ------------------------------------------------------------------ the two levels

    def embed_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """(…, P, 16) ids → (…, P, H): a linear map of the flattened one-hot patch."""
        one_hot = F.one_hot(patches, num_classes=self.config.vocab_size).to(self.patch_embedding.weight.dtype)
        return self.patch_embedding(one_hot.flatten(-2))

    def encode_patches(
        self,
        patches: torch.Tensor,
        patch_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: Cache | None = None,
        use_cache: bool = False,
    ) -> tuple[torch.Tensor, Cache | None]:
        """Patch-level hidden states h (B, P, H); h_i has seen patches 0…i."""
        out = self.patch_decoder(
            inputs_embeds=self.embed_patches(patches),
            attention_mask=patch_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
        )
        return out.last_hidden_state, (out.cache if use_cache else None)

    def spell(self, encoded: torch.Tensor, chars: torch.Tensor, char_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Char-level hidden states for patches given their context h and chars: (N,H),(N,k) → (N,k+1,H).

        Output j predicts char j of the patch: slot 0 holds h (NotaGen replaces the bos slot with it).
        """
        embeds = torch.cat([encoded.unsqueeze(1), self.char_decoder.wte(chars)], dim=1)
        return self.char_decoder(inputs_embeds=embeds, attention_mask=char_mask, use_cache=False).last_hidden_state

    # ------------------------------------------------------------------ flat (per-character) view

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs) -> BaseModelOutput:
        """Flat ids (B, T) → hidden states (B, T, H); position t predicts id t+1.

        T need not be a multiple of 16: a trailing partial patch is padded for the computation only, which
        changes nothing before T because both levels are causal.
        """
        size = self.config.patch_size
        b, t = input_ids.shape
        n_patches = -(-t // size)
        ids = F.pad(input_ids, (0, n_patches * size - t), value=PAD_ID)
        patches = ids.view(b, n_patches, size)
        patch_mask = None
        if attention_mask is not None:
            mask = F.pad(attention_mask, (0, n_patches * size - t), value=0).view(b, n_patches, size)
            patch_mask = mask.any(-1).long()
        hidden = self.encode_patches(patches, patch_mask)[0]  # (B, P, H)
        if n_patches < 2:
            return BaseModelOutput(last_hidden_state=hidden.new_zeros(b, t, self.config.hidden_size))
        context = hidden[:, :-1].reshape(-1, hidden.size(-1))  # h_0 … h_{P-2}
        targets = patches[:, 1:].reshape(-1, size)  # patches 1 … P-1
        spelled = self.spell(context, targets[:, :-1]).view(b, (n_patches - 1) * size, -1)
        # output j of patch i+1 predicts flat id (i+1)·16 + j, so it sits at flat position (i+1)·16 + j − 1
        lead = spelled.new_zeros(b, size - 1, spelled.size(-1))
        tail = spelled.new_zeros(b, 1, spelled.size(-1))
        flat = torch.cat([lead, spelled, tail], dim=1)[:, :t]
        return BaseModelOutput(last_hidden_state=flat)


class NotaGenForCausalLM(NotaGenPreTrainedModel, GenerationMixin):
    """NotaGen with its char LM head. Hierarchical log-likelihoods for training, a flat view for TRL."""

    _tied_weights_keys = {"lm_head.weight": "model.char_decoder.wte.weight"}

    def __init__(self, config: NotaGenConfig):
        super().__init__(config)
        self.model = NotaGenModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.char_decoder.wte

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, new: nn.Module) -> None:
        self.lm_head = new

    # ------------------------------------------------------------------ hierarchical (NotaGen's definition)

    def patch_char_log_probs(
        self, patches: torch.Tensor, patch_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-char log-probs of every patch after the first: ((B,P-1,16) log-probs, (B,P-1,16) scored mask)."""
        if patch_mask is None:
            patch_mask = torch.ones(patches.shape[:2], dtype=torch.long, device=patches.device)
        hidden = self.model.encode_patches(patches, patch_mask)[0]
        b, p, size = patches.shape
        targets = patches[:, 1:]
        scored = (targets != PAD_ID) & patch_mask[:, 1:, None].bool()
        valid = patch_mask[:, 1:].bool()  # patch i+1 exists → spell it from h_i
        context, chars = hidden[:, :-1][valid], targets[valid]
        # NotaGen's char input is [h, c0 … c15] with pad slots masked out; the last slot predicts nothing
        char_mask = torch.cat([torch.ones_like(chars[:, :1]), (chars != PAD_ID).long()], dim=1)
        logits = self.lm_head(self.model.spell(context, chars, char_mask)[:, :-1]).float()
        logps = torch.gather(logits.log_softmax(-1), -1, chars.unsqueeze(-1)).squeeze(-1)
        out = logps.new_zeros(b, p - 1, size)
        out[valid] = logps
        return out * scored, scored

    def patch_log_probs(
        self, patches: torch.Tensor, patch_mask: torch.Tensor | None = None, first_scored_patch: int | torch.Tensor = 1
    ) -> torch.Tensor:
        """Log-likelihood of each piece (B,): the sum over scored chars of patches ≥ first_scored_patch."""
        logps, _ = self.patch_char_log_probs(patches, patch_mask)
        index = torch.arange(1, patches.size(1), device=patches.device)
        first = torch.as_tensor(first_scored_patch, device=patches.device).reshape(-1, 1)
        return (logps.sum(-1) * (index[None, :] >= first)).sum(-1)

    def patch_loss(
        self, patches: torch.Tensor, patch_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean NLL per scored char, number of scored chars): NotaGen's training loss."""
        logps, scored = self.patch_char_log_probs(patches, patch_mask)
        n = scored.sum()
        return -logps.sum() / n.clamp(min=1), n

    # ------------------------------------------------------------------ flat view (TRL, generate)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        patches: torch.Tensor | None = None,
        patch_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> CausalLMOutput:
        """Flat view (``input_ids``) → logits; or, given ``patches``, NotaGen's training loss.

        The ``patches`` form lets a DeepSpeed engine (whose hooks run on ``forward``) train the hierarchical
        loss without building flat logits.
        """
        if patches is not None:
            loss, _ = self.patch_loss(patches, patch_mask)
            return CausalLMOutput(loss=loss)
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)

    def prepare_inputs_for_generation(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs
    ) -> dict:
        # generate() recomputes the whole prefix each step; models.sampling is the fast, cached sampler
        return {"input_ids": input_ids, "attention_mask": attention_mask}


AutoConfig.register("notagen", NotaGenConfig)
AutoModel.register(NotaGenConfig, NotaGenModel)
AutoModelForCausalLM.register(NotaGenConfig, NotaGenForCausalLM)
