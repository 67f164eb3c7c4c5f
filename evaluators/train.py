"""Train an evaluator on the corpus: M3 masked-patch pre-training, then contrastive text-music training.

One process (CPU, or one GPU with bf16): the evaluator is small next to the policy and is trained once
per corpus. Metrics go to MLflow (``pretrain/loss``, ``pretrain/eval_loss``, ``contrastive/loss``,
``contrastive/eval_loss``, ``contrastive/accuracy``, ``contrastive/temperature``, then the held-out
report). The result is an evaluator folder that ``Evaluator.load`` reads.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from base import atomic
from evaluators.centroid_margin import CentroidMargin
from evaluators.config import EvaluatorConfig
from evaluators.data import Batches, Piece, load_pieces
from evaluators.evaluator import Reference
from evaluators.features import FeatureCache, FeatureExtractor, pick_device
from evaluators.m3_patchilizer import M3Patchilizer
from evaluators.model import ClampConfig, ClampModel, text_ids
from evaluators.report import evaluation_report, format_report

log = logging.getLogger(__name__)

LogMetrics = Callable[[dict[str, float], int], None]  # (metrics, step) → MLflow


@dataclass
class EvaluatorResult:
    out_dir: Path
    report: dict[str, float]
    run_id: str | None


def build_model(cfg: EvaluatorConfig) -> ClampModel:
    if cfg.init_from:
        path = Path(cfg.init_from)
        return ClampModel.from_pretrained(path / "model" if (path / "model").is_dir() else path)
    torch.manual_seed(cfg.seed)
    return ClampModel(ClampConfig.from_size(cfg.size, dropout=cfg.dropout, preprocess=cfg.preprocess))


class _Phase:
    """A constant-after-warm-up AdamW phase (CLaMP 2's schedule) with a step/time budget."""

    def __init__(
        self, model: ClampModel, cfg: EvaluatorConfig, params: list, steps: int, seconds: float | None, lr: float
    ):
        self.peak = lr
        self.opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
        self.cfg, self.steps, self.deadline = cfg, steps, (time.monotonic() + seconds) if seconds else None
        self.model = model

    def lr(self, step: int) -> float:
        return self.peak * min(1.0, (step + 1) / max(1, self.cfg.warmup_steps))

    def step(self, loss: torch.Tensor, step: int) -> None:
        for group in self.opt.param_groups:
            group["lr"] = self.lr(step)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline


def _autocast(device: torch.device) -> torch.autocast:
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def pretrain(
    model: ClampModel,
    cfg: EvaluatorConfig,
    train: Batches,
    held: Batches,
    device: torch.device,
    log_metrics: LogMetrics,
    seconds: float | None,
) -> int:
    music = [p for n, p in model.named_parameters() if n.startswith(("music_encoder.", "music_decoder."))]
    phase = _Phase(model, cfg, music, cfg.pretrain_steps, seconds, cfg.lr)
    bar = tqdm(range(cfg.pretrain_steps), desc="evaluator pretrain", unit="step")
    done = 0
    for step in bar:
        model.train()
        x, mask, sel, y = (t.to(device) for t in train.masked(step, cfg.batch_size, cfg.mask_ratio))
        with _autocast(device):
            loss = model.masked_patch_loss(x, mask, sel, y)
        phase.step(loss, step)
        done = step + 1
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if done % cfg.log_every == 0:
            log_metrics({"pretrain/loss": loss.item(), "pretrain/lr": phase.lr(step)}, done)
        last = done == cfg.pretrain_steps or phase.out_of_time()
        if done % cfg.eval_every == 0 or last:
            log_metrics({"pretrain/eval_loss": _masked_eval(model, cfg, held, device)}, done)
        if last:
            break
    return done


@torch.no_grad()
def _masked_eval(model: ClampModel, cfg: EvaluatorConfig, held: Batches, device: torch.device) -> float:
    # Masking stays on in evaluation: without it the task is copying, and the loss says nothing.
    model.eval()
    losses = []
    for k in range(4):
        x, mask, sel, y = (t.to(device) for t in held.masked(10_000 + k, cfg.batch_size, cfg.mask_ratio, "mask"))
        with _autocast(device):
            losses.append(model.masked_patch_loss(x, mask, sel, y).item())
    return float(np.mean(losses))


def contrastive(
    model: ClampModel,
    cfg: EvaluatorConfig,
    train: Batches,
    held: Batches,
    device: torch.device,
    log_metrics: LogMetrics,
    seconds: float | None,
    offset: int,
) -> int:
    params = [p for n, p in model.named_parameters() if not n.startswith("music_decoder.")]
    phase = _Phase(model, cfg, params, cfg.contrastive_steps, seconds, cfg.contrastive_lr)
    margin = CentroidMargin(cfg.centroid_margin, cfg.center_features) if cfg.centroid_margin > 0 else None
    bar = tqdm(range(cfg.contrastive_steps), desc="evaluator contrastive", unit="step")
    done = 0
    for step in bar:
        model.train()
        texts, ids, mask, negatives, prompts = train.paired(step, cfg.batch_size, cfg.text_dropout, cfg.hard_negatives)
        t_ids, t_mask = text_ids(texts, model.config.text_length)
        if negatives is not None:
            negatives = tuple(x.to(device) for x in negatives)
        with _autocast(device):
            out = model.contrastive(t_ids.to(device), t_mask.to(device), ids.to(device), mask.to(device), negatives)
        loss, gap = out.loss, None
        if margin is not None and out.negative_music is not None:
            margin.update(out.music, prompts)  # first, so every prompt of the batch has a centroid
            gap = margin.loss(out.music.float(), out.negative_music.float(), prompts)
            loss = loss + cfg.centroid_margin_weight * gap
        phase.step(loss, step)
        done = step + 1
        bar.set_postfix(loss=f"{out.loss.item():.3f}")
        if done % cfg.log_every == 0:
            log_metrics(
                {
                    "contrastive/loss": out.loss.item(),
                    "contrastive/accuracy": out.text_to_music_accuracy.item(),
                    "contrastive/temperature": float(1 / model.logit_scale.detach().exp()),
                    **({"contrastive/centroid_margin_loss": gap.item()} if gap is not None else {}),
                },
                offset + done,
            )
        last = done == cfg.contrastive_steps or phase.out_of_time()
        if done % cfg.eval_every == 0 or last:
            model.eval()
            with torch.no_grad():
                texts, ids, mask, _, _ = held.paired(10_000, cfg.batch_size, False)
                t_ids, t_mask = text_ids(texts, model.config.text_length)
                ev = model.contrastive(t_ids.to(device), t_mask.to(device), ids.to(device), mask.to(device))
            log_metrics(
                {
                    "contrastive/eval_loss": ev.loss.item(),
                    "contrastive/eval_accuracy": ev.text_to_music_accuracy.item(),
                },
                offset + done,
            )
        if last:
            break
    return done


def build_reference(extractor: FeatureExtractor, corpus: Path, pieces: dict[str, list[Piece]]) -> Reference:
    ids: list[str] = []
    prompts: list[str] = []
    composers: list[str] = []
    splits: list[str] = []
    texts: list[str] = []
    for split, rows in pieces.items():
        for p in rows:
            ids.append(p.id)
            prompts.append(p.prompt)
            composers.append(p.composer)
            splits.append(split)
            texts.append(p.text)
    feats = extractor.extract(texts, progress=True)
    return Reference(ids, prompts, composers, splits, feats, str(corpus.resolve()))


def train_evaluator(
    cfg: EvaluatorConfig,
    corpus: str | Path,
    tracking_uri: str | None = None,
    experiment: str = "clampdpo",
    params: dict | None = None,
) -> EvaluatorResult:
    """Train (or, with zero steps and ``init_from``, just index) an evaluator into ``cfg.out_dir``."""
    import mlflow

    from base.tracking import tracking_uri as default_uri
    from base.tracking import use_experiment

    corpus = Path(corpus)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_pieces = load_pieces(corpus, "train", cfg.subset)
    held = load_pieces(corpus, "eval")
    training = cfg.pretrain_steps + cfg.contrastive_steps > 0  # zero steps: only index the corpus
    if (training and len(train_pieces) < cfg.batch_size) or len(held) < 2:
        raise ValueError(
            f"{corpus}: {len(train_pieces)} train / {len(held)} eval pieces are too few (batch_size {cfg.batch_size})"
        )
    device = pick_device(cfg.device)
    random.seed(cfg.seed), np.random.seed(cfg.seed)
    model = build_model(cfg).to(device)
    patchilizer = M3Patchilizer(model.config.patch_size, model.config.preprocess)
    train_b = Batches(train_pieces, patchilizer, cfg.train_patches, cfg.seed)
    held_b = Batches(held, patchilizer, cfg.train_patches, cfg.seed + 1)
    log.info(
        "evaluator %s (%.1fM parameters) on %s: %d train (%s) / %d held-out pieces, device %s",
        cfg.size,
        sum(p.numel() for p in model.parameters()) / 1e6,
        corpus,
        len(train_pieces),
        cfg.subset,
        len(held),
        device,
    )

    uri = default_uri(tracking_uri, out)
    use_experiment(uri, experiment, out)
    with mlflow.start_run(run_name="evaluator") as run:
        from base.tracking import flatten

        mlflow.log_params(flatten(params or {"evaluator": cfg.__dict__}))
        mlflow.set_tags({"clampdpo.stage": "evaluator"})

        def log_metrics(metrics: dict[str, float], step: int) -> None:
            mlflow.log_metrics(metrics, step=step)

        total = cfg.pretrain_steps + cfg.contrastive_steps
        budget = cfg.max_minutes * 60 if cfg.max_minutes else None
        share = (lambda n: budget * n / total) if budget and total else (lambda n: None)
        start = time.monotonic()
        done_pre = (
            pretrain(model, cfg, train_b, held_b, device, log_metrics, share(cfg.pretrain_steps))
            if cfg.pretrain_steps
            else 0
        )
        left = budget - (time.monotonic() - start) if budget else None
        done_con = (
            contrastive(model, cfg, train_b, held_b, device, log_metrics, left, done_pre)
            if cfg.contrastive_steps
            else 0
        )
        minutes = (time.monotonic() - start) / 60
        if (done_pre, done_con) != (cfg.pretrain_steps, cfg.contrastive_steps):
            log.warning(
                "evaluator.max_minutes (%.1f min) cut training at %d of %d masked-patch and %d of %d "
                "contrastive steps: this evaluator depends on the machine's speed",
                cfg.max_minutes,
                done_pre,
                cfg.pretrain_steps,
                done_con,
                cfg.contrastive_steps,
            )

        model.eval()
        atomic.write_dir(out / "model", model.save_pretrained)
        extractor = FeatureExtractor(model, device, cfg.feature_batch_size, FeatureCache(out / "feature_cache.npz"))
        reference = build_reference(extractor, corpus, {"train": load_pieces(corpus, "train"), "eval": held})
        reference.save(out / "reference.npz")
        report = evaluation_report(
            extractor, train_pieces, held, cfg.min_prompt_pieces, cfg.seed, model, center=cfg.center_features
        )
        report.update({"train/minutes": minutes, "train/pretrain_steps": done_pre, "train/contrastive_steps": done_con})
        mlflow.log_metrics({k: float(v) for k, v in report.items()})
        atomic.write_json(out / "report.json", report)
        mlflow.log_artifact(str(out / "report.json"))
        log.info("held-out report:\n%s", format_report(report))
        return EvaluatorResult(out, report, run.info.run_id)
