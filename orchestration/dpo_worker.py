"""One rank of the campaign's trainer group: a DeepSpeed engine built once, trained on every round's pairs.

The engine (ZeRO data parallel, torch's AdamW) is created when the group starts and lives until the
campaign ends; a round is one ``train_round`` call on every rank. TRL is the source of the batching and
the loss: each round a ``NotaGenDPOTrainer`` (TRL's DPOTrainer with our DPOP loss) is built around the
engine's module, *without* its own DeepSpeed engine, to tokenize the pairs, precompute the reference
log-probs and compute the loss of each micro-batch; the engine does backward and step.

Round k starts from the policy of round k−1, which is exactly what the engine holds when the round
begins, so with ``dpo.reference: previous`` the reference log-probs are precomputed from the engine's own
weights before the first step: the reference moves with the rounds and is never loaded from disk. The
optimizer's state is cleared at the start of each round, so a round depends only on its starting policy,
its pairs and its seed, as when every round was a fresh process; a trainer rebuilt from the saved policy
after a failure therefore trains exactly as the lost one would have.

Every ``dpo.checkpoint_every`` steps the engine writes a sealed DeepSpeed checkpoint into the round's
folder; a round started again after its trainer died resumes from the newest one, skipping the
micro-batches that were consumed, in the same order.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration.weight_sync import WeightMember

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainerSpec:
    """What every rank needs to build its engine once (the rounds bring their own ``RoundJob``)."""

    dpo: Any  # DPORoundConfig
    precision: str
    policy_dir: str  # the policy the group starts from
    version: int  # the round that made it (0: the starting policy)
    reference_dir: str | None  # dpo.reference 'initial': the fixed reference; None: the previous policy


@dataclass(frozen=True)
class RoundJob:
    """One round's training: its pairs, where its policy and summary go, and the MLflow run it logs to."""

    round: int
    pairs_file: str
    out_dir: str
    tracking_uri: str
    run_id: str | None
    # rank 0 keeps the round's weights on its device for a weight group to send (``release_weights`` drops
    # them); off, nothing is held past the round (ZeRO-3's gathered copy is a whole policy)
    keep_weights: bool = False


def rss_mb() -> float:
    """This process's private resident memory now (not its peak), in MiB; NaN where /proc is not there.

    Private (``RssAnon``): the pages of Ray's shared object store that a rank maps when it returns weights
    count in its plain RSS, grow with every object it touches and are not its own memory.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def _release_memory() -> None:
    """Give the round's freed memory back to the system, so that a long-lived rank's footprint stays that of
    what it keeps (glibc holds freed heap pages otherwise, and its resident size creeps with each round's
    activations)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


class DPOWorker(WeightMember):
    """A Ray actor: rank ``rank`` of ``world`` training ranks, ``threads`` torch threads. Rank 0 is also the
    sender of a weight group (``orchestration.weight_sync``) when the campaign pushes weights to the samplers."""

    def __init__(self, rank: int, world: int, threads: int):
        import torch

        torch.set_num_threads(max(1, threads))
        self.rank, self.world = rank, world
        self.version: int | None = None
        self.engine: Any = None
        self._published: tuple[int, dict[str, Any]] | None = None  # rank 0: the last round's weights, until sent
        self._ipc_buffers: list[Any] = []

    def rendezvous(self) -> tuple[str, int]:
        """Rank 0's address for the process group (asked before ``setup``)."""
        import ray

        return ray.util.get_node_ip_address(), _free_port()

    def setup(self, host: str, port: int, spec: TrainerSpec) -> float:
        """Join the process group and build the engine from ``spec.policy_dir``; returns the seconds it took."""
        import torch
        import torch.distributed as dist
        from transformers.utils import logging as hf_logging

        from models.config import load_model
        from orchestration.deepspeed_setup import adamw, deepspeed_config, initialize, use_bf16
        from orchestration.workers import _worker_logging
        from pipelines.dpo.trainer import trl_changes

        start = time.perf_counter()
        changed = trl_changes()
        if changed:  # fail at the start, naming what changed, not mid-round with an AttributeError
            raise RuntimeError(
                "the installed TRL is not the one pipelines/dpo/trainer.py adapts: " + "; ".join(changed)
            )
        _worker_logging()
        hf_logging.disable_progress_bar()
        os.environ["TQDM_DISABLE"] = "1"  # TRL's reference pass draws a bar per round on the driver's console
        gpu = torch.cuda.is_available() and bool(os.environ.get("CUDA_VISIBLE_DEVICES"))
        # what accelerate (inside TRL's trainer) and DeepSpeed read to find the group this rank belongs to
        os.environ.update(
            {
                "MASTER_ADDR": host,
                "MASTER_PORT": str(port),
                "RANK": str(self.rank),
                "WORLD_SIZE": str(self.world),
                "LOCAL_RANK": "0",  # Ray gives each rank its own GPU as device 0
                "LOCAL_WORLD_SIZE": "1",
            }
        )
        if not dist.is_initialized():
            dist.init_process_group(
                "nccl" if gpu else "gloo",
                init_method=f"tcp://{host}:{port}",
                rank=self.rank,
                world_size=self.world,
            )
        self.device = torch.device("cuda", 0) if gpu else torch.device("cpu")
        self.weights_device = self.device
        self.spec = spec
        cfg = spec.dpo
        self.bf16 = use_bf16(spec.precision, self.device)
        policy = load_model(spec.policy_dir, dropout=cfg.dropout).to(self.device)
        self.ref = load_model(spec.reference_dir, dropout=0.0).to(self.device) if spec.reference_dir else None
        ds_config = deepspeed_config(
            cfg.zero_stage, cfg.batch_pairs, cfg.grad_accum, self.world, cfg.grad_clip, self.bf16
        )
        with contextlib.redirect_stdout(io.StringIO()):  # DeepSpeed prints its config on rank 0
            self.engine = initialize(policy, adamw(policy, cfg.lr, cfg.weight_decay), ds_config)
        self.version = spec.version
        return time.perf_counter() - start

    def _trainer(self, rows: list[dict], seed: int, out: Path) -> Any:
        """TRL's trainer for this round around the engine's module: tokenized pairs, reference log-probs."""
        import datasets
        from datasets import Dataset

        from models.tokenizer import NotaGenTokenizer
        from pipelines.dpo.trainer import NotaGenDPOTrainer, training_args

        datasets.disable_progress_bars()
        # the pairs as a dataset on disk in the round's folder (which every node sees): TRL's rank 0 writes the
        # tokenized pairs and the reference log-probs beside it and the other ranks read them from there (an
        # in-memory dataset would keep them in each process's own temporary folder, out of the others' reach)
        path = out / "pairs-dataset"
        if self.rank == 0:
            shutil.rmtree(path, ignore_errors=True)
            Dataset.from_list(rows).save_to_disk(str(path))
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
        module = self.engine.module
        NotaGenDPOTrainer.unpatched(module, self.ref)
        cfg = module.config
        args = training_args(
            self.spec.dpo,
            str(out / "trainer"),
            cfg.patch_length * cfg.patch_size,
            seed,
            bf16=self.bf16,
            use_cpu=self.device.type == "cpu",
            deepspeed=None,  # the engine is ours and built once; TRL's trainer only tokenizes and scores
            progress=False,
        )
        # datasets fingerprints TRL's map functions with dill, whose bytecode listing leaks to stdout
        with contextlib.redirect_stdout(io.StringIO()):
            return NotaGenDPOTrainer(
                model=module,
                ref_model=self.ref,
                args=args,
                dpop_lambda=self.spec.dpo.dpop_lambda,
                train_dataset=Dataset.load_from_disk(str(path)),
                processing_class=NotaGenTokenizer(patch_size=cfg.patch_size),
            )

    def _reset_optimizer(self) -> None:
        """Forget the previous round's Adam moments (a round starts as a fresh optimizer would)."""
        opt = self.engine.optimizer
        while hasattr(opt, "optimizer"):  # DeepSpeed's ZeRO / bf16 wrappers hold torch's optimizer inside
            opt = opt.optimizer
        opt.state.clear()
        self.engine.zero_grad()

    def train_round(self, job: RoundJob, start_version: int) -> tuple[dict[str, Any], Any]:
        """Train on round ``job.round``'s pairs from policy ``start_version``; returns (summary, weights).

        The weights (``PolicyWeights``, version ``job.round``) come from rank 0 only (None elsewhere); as the
        second return value they go to the object store owned by the caller, not by this actor.
        """
        import torch

        from orchestration.weights import expect_version
        from pipelines.dpo.dataset import read_pairs

        expect_version(self.version, start_version, f"trainer rank {self.rank}")
        entered = time.perf_counter()
        self._published = None
        out, seed = Path(job.out_dir), self.spec.dpo.seed + job.round
        rss_before = rss_mb()
        self._reset_optimizer()
        torch.manual_seed(seed)
        rows = [
            {"prompt": p.prompt_text, "chosen": p.chosen_text, "rejected": p.rejected_text}
            for p in read_pairs(job.pairs_file)
        ]
        t0 = time.perf_counter()
        trainer = self._trainer(rows, seed, out)
        build_seconds = time.perf_counter() - t0
        loop = self._train_steps(trainer, job, seed, out)
        state = self._export()  # collective under ZeRO-3
        self.version = job.round
        ref_seconds = trainer.ref_logps_seconds
        del trainer
        _release_memory()
        if self.rank != 0:
            return {}, None
        weights = self._save_policy(job, out, state)
        history = loop.pop("history")
        first, last = (history[0], history[-1]) if history else ({}, {})
        summary = {
            "pairs": len(rows),
            **loop,
            "train_loss": sum(h["loss"] for h in history) / max(1, len(history)),
            "reference_seconds": ref_seconds,  # the reference's forward passes
            "trainer_build_seconds": build_seconds,  # TRL's trainer: tokenizing and the reference pass
            "world_size": self.world,
            "device": str(self.device),
            "bf16": self.bf16,
            "trainer/rss_mb": rss_mb(),
            "trainer/rss_mb_before": rss_before,
            **{f"first/{k}": v for k, v in first.items()},
            **last,
        }
        summary["round_seconds"] = time.perf_counter() - entered  # all of this call, for bench/round.py
        from base import atomic

        atomic.write_json(out / "dpo_summary.json", summary)
        return summary, weights

    def _train_steps(self, trainer: Any, job: RoundJob, seed: int, out: Path) -> dict[str, Any]:
        """The round's optimizer steps (``pipelines.dpo.schedule``) over this rank's share of the pairs, from
        the newest sealed checkpoint when a lost attempt left one; every step's metrics go to MLflow (rank 0)."""
        import torch
        from torch.utils.data import DataLoader, DistributedSampler

        from base.tracking import MetricLogger
        from orchestration.deepspeed_setup import set_lr
        from pipelines.dpo.schedule import RoundSchedule

        cfg = self.spec.dpo
        data = trainer.train_dataset
        data = data.select_columns([c for c in data.column_names if c.endswith(("_ids", "_logps"))])
        sampler = DistributedSampler(data, num_replicas=self.world, rank=self.rank, shuffle=True, seed=seed)
        loader = DataLoader(data, batch_size=cfg.batch_pairs, sampler=sampler, collate_fn=trainer.data_collator)
        schedule = RoundSchedule.of(len(loader), cfg)
        ckpt_dir = out / "checkpoints"
        step, history = self._resume(ckpt_dir, job, schedule.steps)
        tracker = MetricLogger(job.tracking_uri, job.run_id) if self.rank == 0 else None
        # a round run again after its trainer died recomputes the same steps: those a lost attempt already sent
        # to MLflow are not sent twice
        sent_before = tracker.last_step("loss") if tracker else 0
        flushed = 0

        def flush(done: int) -> int:
            """Send the steps after the first ``done`` to MLflow (one write); returns how many are sent."""
            if tracker:
                tracker.log_steps([(i + 1, h) for i, h in enumerate(history) if i >= done and i + 1 > sent_before])
            return len(history)

        self.engine.train()
        trainer.take_metrics()  # what building the trainer logged is not a step's
        losses: list[float] = []
        skip = step * cfg.grad_accum
        micro, compute, lr = 0, 0.0, schedule.lr(step)
        t1 = time.perf_counter()
        for epoch in range(schedule.epochs):
            sampler.set_epoch(epoch)
            for batch in loader:
                if micro >= schedule.micro_total:
                    break
                micro += 1
                if micro <= skip:  # consumed before the checkpoint this round resumed from
                    continue
                c0 = time.perf_counter()
                batch = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in batch.items()}
                loss = trainer.compute_loss(self.engine, batch)
                self.engine.backward(loss)
                losses.append(float(loss.detach()))
                if micro % cfg.grad_accum == 0:
                    lr = schedule.lr(step)
                    set_lr(self.engine, lr)
                self.engine.step()
                compute += time.perf_counter() - c0
                if micro % cfg.grad_accum:
                    continue
                step += 1
                row = trainer.take_metrics()
                row.update(
                    {"loss": sum(losses) / len(losses), "learning_rate": lr, "epoch": micro / schedule.per_epoch}
                )
                losses.clear()
                history.append(row)
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < schedule.steps:
                    flushed = flush(flushed)
                    self._checkpoint(ckpt_dir, step, history, torch.get_rng_state())
        flush(flushed)
        return {
            "history": history,
            "steps": step,
            "steps_per_epoch": max(1, schedule.per_epoch // cfg.grad_accum),
            "seconds": compute,  # forward, backward and step of every micro-batch
            "loop_seconds": time.perf_counter() - t1,
        }

    def _resume(self, ckpt_dir: Path, job: RoundJob, steps: int) -> tuple[int, list[dict]]:
        """(steps done, their metrics) of the newest sealed checkpoint of the round; (0, []) without one."""
        import torch

        from orchestration.deepspeed_setup import trusted_checkpoint

        tag = trusted_checkpoint(ckpt_dir)
        if tag is None:
            return 0, []
        _, client = self.engine.load_checkpoint(str(ckpt_dir), tag=tag)
        torch.set_rng_state(client["rng"])
        log.info("round %d: resuming from %s (step %d of %d)", job.round, tag, int(client["step"]), steps)
        return int(client["step"]), list(client["history"])

    def _checkpoint(self, ckpt_dir: Path, step: int, history: list[dict], rng: Any) -> None:
        """A sealed DeepSpeed checkpoint of the round at ``step`` (the newest one only is kept)."""
        from base import integrity
        from orchestration.deepspeed_setup import prune_checkpoints

        client = {"step": step, "history": history, "rng": rng}
        self.engine.save_checkpoint(str(ckpt_dir), tag=f"step{step}", client_state=client)
        if self.rank == 0:
            integrity.seal(ckpt_dir / f"step{step}")
            prune_checkpoints(ckpt_dir, 1)

    def _export(self) -> dict[str, Any]:
        from orchestration.deepspeed_setup import export_state

        return export_state(self.engine)

    def _save_policy(self, job: RoundJob, out: Path, state: dict[str, Any]) -> Any:
        """Rank 0: the round's policy written to ``out/policy`` and returned as ``PolicyWeights``; the round's
        checkpoints and dataset cache, now spent, removed (every rank is past them: the export was collective)."""
        from base import atomic
        from orchestration.weights import PolicyWeights

        module = self.engine.module
        if job.keep_weights:  # on the device: what a weight group sends, without the host
            self._published = (job.round, state)
        weights = PolicyWeights.of(module, job.round, state)
        # a copy: save_pretrained drops the tied lm_head from the dict it is given, and the samplers need it
        atomic.write_dir(out / "policy", lambda tmp: module.save_pretrained(tmp, state_dict=dict(weights.state_dict)))
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        shutil.rmtree(out / "pairs-dataset", ignore_errors=True)
        return weights

    # ------------------------------------------------------------------ rank 0 as the weight group's sender

    def _state(self, version: int) -> dict[str, Any]:
        from orchestration.weights import expect_version

        expect_version(self._published[0] if self._published else None, version, f"trainer rank {self.rank}")
        assert self._published is not None
        return self._published[1]

    def weight_manifest(self, version: int) -> Any:
        """What the weights of ``version`` are made of (the receivers allocate from it)."""
        from orchestration.weight_group import Manifest

        return Manifest.of(version, self.engine.module.config.to_dict(), self._state(version))

    def send_weights(self, version: int) -> list[Any] | None:
        """Send ``version`` through the weight group; under ipc, returns the handles the receivers open (the
        buffers stay here until ``release_weights``)."""
        from orchestration.weight_group import export_ipc

        manifest, state = self.weight_manifest(version), self._state(version)
        if self._group == "ipc":
            self._ipc_buffers = manifest.pack(state)
            return export_ipc(self._ipc_buffers)
        if self._group is None:
            raise RuntimeError(f"trainer rank {self.rank} is in no weight group")
        self._group.send(manifest, state)
        return None

    def release_weights(self) -> None:
        """The push is over: drop the weights kept for it (ZeRO-3's gathered copy, ipc buffers)."""
        self._published, self._ipc_buffers = None, []
