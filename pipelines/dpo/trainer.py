"""TRL's DPOTrainer for NotaGen models, with NotaGen's DPOP loss added as ``loss_type="dpop"``.

Two things differ from a text LM and are handled here, nowhere else:

* the collator masks the pad characters inside patches out of the completion, so TRL's summed log-probs
  are NotaGen's sequence log-likelihood (pad chars after a patch's eos are not scored);
* ``dpop`` (−log σ(β(Δ − λ·max(0, log π_ref(y_w) − log π(y_w))))) is computed by
  ``pipelines.dpo.loss.dpop_loss``; every TRL loss type is still available unchanged.

Metrics keep TRL's names (``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``,
``rewards/accuracies``, ``logps/chosen``, ``logps/rejected``) plus ``dpop/penalty``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from trl import DPOConfig, DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

from models.patchilizer import PAD_ID
from pipelines.dpo.config import DPORoundConfig
from pipelines.dpo.loss import dpop_loss


def training_args(
    cfg: DPORoundConfig,
    output_dir: str,
    max_length: int,
    seed: int,
    *,
    bf16: bool = False,
    use_cpu: bool = True,
    deepspeed: dict | None = None,
    progress: bool = True,
) -> DPOConfig:
    """TRL's DPOConfig for one round of our ``dpo:`` section: the one place the section is translated."""
    return DPOConfig(
        output_dir=output_dir,
        loss_type=[cfg.loss_type],
        beta=cfg.beta,
        learning_rate=cfg.lr,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=cfg.warmup_steps,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_pairs,
        gradient_accumulation_steps=cfg.grad_accum,
        max_grad_norm=cfg.grad_clip,
        weight_decay=cfg.weight_decay,
        max_length=max_length,
        precompute_ref_log_probs=True,
        precompute_ref_batch_size=cfg.batch_pairs,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=seed,
        bf16=bf16,
        use_cpu=use_cpu,
        disable_tqdm=not progress,
        deepspeed=deepspeed,
        dataloader_num_workers=0,
        # NotaGen's two GPT-2s run without activation checkpointing (TRL turns it on by default)
        gradient_checkpointing=False,
    )


@dataclass
class PatchPreferenceCollator(DataCollatorForPreference):
    """TRL's preference collator; pad chars inside patches are taken out of the completion."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        out = super().torch_call(examples)
        out["completion_mask"] = out["completion_mask"] * (out["input_ids"] != PAD_ID).long()
        return out


class NotaGenDPOTrainer(DPOTrainer):
    """DPOTrainer with the patch collator and the ``dpop`` loss (λ = ``dpop_lambda``)."""

    def __init__(self, *args: Any, dpop_lambda: float, **kwargs: Any):
        cfg: DPOConfig = kwargs["args"]
        if "dpop" in cfg.loss_type and len(cfg.loss_type) > 1:
            raise ValueError(f"loss_type: dpop cannot be combined with other losses, got {cfg.loss_type}")
        self.dpop_lambda = dpop_lambda
        if kwargs.get("data_collator") is None:
            kwargs["data_collator"] = PatchPreferenceCollator(
                pad_token_id=PAD_ID, max_length=cfg.max_length, truncation_mode=cfg.truncation_mode
            )
        self.ref_logps_seconds = 0.0
        super().__init__(*args, **kwargs)

    def _precompute_ref_logps(self, *args: Any, **kwargs: Any) -> Any:
        # timed: the reference's forward passes are a round's compute, building the trainer around them is not
        start = time.perf_counter()
        try:
            return super()._precompute_ref_logps(*args, **kwargs)
        finally:
            self.ref_logps_seconds += time.perf_counter() - start

    def _compute_loss(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], return_outputs: bool) -> Any:
        if self.loss_types != ["dpop"]:
            return super()._compute_loss(model, inputs, return_outputs)
        mode = "train" if self.model.training else "eval"
        keys = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps"}
        kwargs = {k: v for k, v in inputs.items() if k not in keys}
        kwargs["use_cache"] = False
        mask = inputs["completion_mask"]
        labels = inputs["input_ids"].masked_fill(mask == 0, -100)
        seq_len = mask.size(1) - 1
        logps = model(**kwargs, labels=labels, fused_lm_head=True).log_probs[:, -seq_len:].sum(1)
        chosen, rejected = logps.chunk(2, dim=0)
        if self.precompute_ref_logps:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            with torch.no_grad():
                ref = self.ref_model(**kwargs, labels=labels, fused_lm_head=True).log_probs[:, -seq_len:].sum(1)
            ref_chosen, ref_rejected = ref.chunk(2, dim=0)
        ref_chosen, ref_rejected = ref_chosen.to(chosen), ref_rejected.to(chosen)
        losses, chosen_rewards, rejected_rewards = dpop_loss(
            chosen, rejected, ref_chosen, ref_rejected, self.beta, self.dpop_lambda
        )
        gather = self.accelerator.gather
        metrics = self._metrics[mode]
        metrics["rewards/chosen"].append(gather(chosen_rewards).mean().item())
        metrics["rewards/rejected"].append(gather(rejected_rewards).mean().item())
        metrics["rewards/accuracies"].append(gather((chosen_rewards > rejected_rewards).float()).mean().item())
        metrics["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
        metrics["logps/chosen"].append(gather(chosen.detach()).mean().item())
        metrics["logps/rejected"].append(gather(rejected.detach()).mean().item())
        metrics["dpop/penalty"].append(gather((ref_chosen - chosen.detach()).clamp(min=0)).mean().item())
        loss = losses.mean()
        return (loss, None) if return_outputs else loss
