"""TRL's DPOTrainer for NotaGen models, with NotaGen's DPOP loss added as ``loss_type="dpop"``: the one
adapter between TRL and this project, and the only place that touches TRL's internals (``TRL_INTERNALS``,
checked by ``trl_changes``, which the tests and every trainer rank run).

TRL's trainer tokenizes a round's pairs, precomputes the reference log-probs and computes each micro-batch's
loss; the loop, its optimizer and its schedule are ours (``pipelines.dpo.schedule``), so the DPOConfig made
here carries no schedule. Two things differ from a text LM and are handled here, nowhere else:

* the collator masks the pad characters inside patches out of the completion, so TRL's summed log-probs
  are NotaGen's sequence log-likelihood (pad chars after a patch's eos are not scored);
* ``dpop`` (−log σ(β(Δ − λ·max(0, log π_ref(y_w) − log π(y_w))))) is computed by
  ``pipelines.dpo.loss.dpop_loss``; every TRL loss type is still available unchanged.

Metrics keep TRL's names (``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``,
``rewards/accuracies``, ``logps/chosen``, ``logps/rejected``) plus ``dpop/penalty``.
"""

from __future__ import annotations

import inspect
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
    """TRL's DPOConfig for one round of our ``dpo:`` section: the one place the section is translated. Only
    what TRL's trainer reads to tokenize, batch and score: learning rate, warm-up, epochs, accumulation,
    clipping and weight decay are the loop's (``pipelines.dpo.schedule``, ``orchestration.deepspeed_setup``)."""
    return DPOConfig(
        output_dir=output_dir,
        loss_type=[cfg.loss_type],
        beta=cfg.beta,
        per_device_train_batch_size=cfg.batch_pairs,
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


# What this project uses of TRL beyond its public API: overridden methods (with the parameters our overrides
# take) and attributes read from a built trainer. A TRL release that changes one of them fails ``trl_changes``.
TRL_INTERNALS: dict[str, tuple[str, ...]] = {
    "DPOTrainer._compute_loss": ("self", "model", "inputs", "return_outputs"),
    "DPOTrainer._precompute_ref_logps": ("self", "dataset", "name", "batch_size"),
}
TRL_ATTRIBUTES = ("_metrics", "loss_types", "precompute_ref_logps", "accelerator", "beta", "ref_model")


def trl_changes(trainer: Any = None) -> list[str]:
    """What of ``TRL_INTERNALS`` (and, given a built trainer, ``TRL_ATTRIBUTES``) the installed TRL no longer
    has as this adapter expects; empty when all is as it was."""
    import trl

    problems = []
    for name, params in TRL_INTERNALS.items():
        method = getattr(DPOTrainer, name.split(".")[1], None)
        if method is None:
            problems.append(f"{name} is gone")
        elif tuple(inspect.signature(method).parameters) != params:
            problems.append(f"{name} takes {tuple(inspect.signature(method).parameters)}, not {params}")
    if trainer is not None:
        problems += [f"DPOTrainer().{a} is gone" for a in TRL_ATTRIBUTES if not hasattr(trainer, a)]
        metrics = getattr(trainer, "_metrics", None)
        if metrics is not None and not (isinstance(metrics, dict) and "train" in metrics):
            problems.append("DPOTrainer()._metrics has no 'train' metrics")
    return [f"TRL {trl.__version__}: {p}" for p in problems]


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

    @staticmethod
    def unpatched(*modules: torch.nn.Module | None) -> None:
        """Give back each module its class's own ``forward``: TRL patches it on the instance whenever a trainer
        is built around it, and a long-lived engine's module gets a new trainer every round."""
        for module in modules:
            if module is not None:
                module.__dict__.pop("forward", None)

    def take_metrics(self) -> dict[str, float]:
        """The mean of each training metric logged since the last call (``rewards/margins``, ...), cleared."""
        logged = self._metrics["train"]
        out = {k: sum(v) / len(v) for k, v in logged.items() if v}
        logged.clear()
        return out

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
