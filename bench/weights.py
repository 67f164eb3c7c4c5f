"""How long a round's new policy takes to reach the samplers: the object store against the broadcast channel.

    python bench/weights.py [--size small] [--samplers 2] [--rounds 3] [--gpu auto|yes|no] [--out-json FILE]

A real trainer group (one DeepSpeed rank) trains one tiny step a round on a policy of NotaGen's ``--size``,
so that its rank 0 holds a new version, as in a campaign; then the version reaches ``--samplers`` sampler
actors both ways, each timed from the driver until every sampler holds it:

- object store: the driver publishes the trainer's returned copy and every sampler fetches it and builds its
  model from it (what a sampler's first unit of a round does);
- broadcast: the trainer's rank 0 sends its weights into the samplers' models (``campaign.weight_channel:
  broadcast``): gloo on CPU, NCCL between GPUs, CUDA IPC when all share one GPU (with ``--gpu yes`` on one GPU,
  the trainer and the samplers each reserve a share of it). Round 1's figure includes forming the group.

Every sampler's weights are checked against the trainer's after each broadcast. The trainer's own copy to
the host (the object store's input and the policy it saves) is paid on both paths and not counted here.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ray  # noqa: E402
import torch  # noqa: E402

from models.config import ModelConfig  # noqa: E402
from models.sampling_config import SamplingConfig  # noqa: E402
from orchestration.actors import ActorPool, Resources, SamplerActor  # noqa: E402
from orchestration.dpo_worker import RoundJob, TrainerSpec  # noqa: E402
from orchestration.placement import Reservation  # noqa: E402
from orchestration.ray_runtime import ensure_ray  # noqa: E402
from orchestration.trainer_group import TrainerGroup  # noqa: E402
from orchestration.weight_sync import BroadcastChannel  # noqa: E402
from orchestration.weights import ObjectStoreChannel  # noqa: E402
from pipelines.dpo.config import DPORoundConfig  # noqa: E402
from pipelines.dpo.dataset import PairRecord, write_pairs  # noqa: E402

PROMPT = "%Folk\n%Traditional, Irish\n%Solo melody\n"
CHOSEN = "L:1/8\nM:6/8\nK:D\nV:1 treble\n[r:0/1][V:1]DFA dfa|gfe d3|\n[r:1/0][V:1]AFD DFA|d3 d3|]\n"
REJECTED = "L:1/8\nM:6/8\nK:D\nV:1 treble\n[r:0/0][V:1]zzz zzz|^c^c^c =c=c=c|\n"


def _pairs(path: Path, k: int) -> str:
    records = [PairRecord(k, "p", PROMPT, f"c{i}", f"r{i}", CHOSEN, REJECTED, 0.9, 0.1, i, 100 + i) for i in range(2)]
    write_pairs(path, records, {"round": k})
    return str(path)


def _fetch(pool: ActorPool, handle: dict) -> float:
    """Seconds until every sampler has fetched ``handle``'s version from the object store and built its model."""
    start = time.perf_counter()
    ray.get([a.__ray_call__.remote(lambda self: self._load(handle)) for a in pool.actors])
    return time.perf_counter() - start


def _matches(pool: ActorPool, weights: dict[str, torch.Tensor]) -> bool:
    def state(self: SamplerActor) -> dict[str, torch.Tensor]:
        return {k: v.detach().float().cpu() for k, v in self.sampler.model.state_dict().items()}

    return all(
        all(torch.equal(held[k], v) for k, v in weights.items())
        for held in ray.get([a.__ray_call__.remote(state) for a in pool.actors])
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="small", help="NotaGen size of the policy (default small, 110M)")
    parser.add_argument("--samplers", type=int, default=2, help="sampler actors (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="versions published (default 3)")
    parser.add_argument("--gpu", default="auto", choices=("auto", "yes", "no"), help="GPUs for trainer and samplers")
    parser.add_argument("--out-json")
    args = parser.parse_args()

    ensure_ray(None)
    gpus = ray.cluster_resources().get("GPU", 0.0)
    use_gpu = args.gpu == "yes" or (args.gpu == "auto" and gpus > 0)
    if use_gpu and not gpus:
        raise SystemExit("--gpu yes: this machine's Ray sees no GPU")
    members = 1 + args.samplers
    # one GPU each where there are enough, else every member a share of them (then they meet over CUDA IPC)
    share = (1.0 if gpus >= members else gpus / members) if use_gpu else 0.0
    cpus = max(0.25, min(1.0, ray.cluster_resources().get("CPU", 1.0) / members))

    tmp = Path(tempfile.mkdtemp(prefix="bench-weights-"))
    model = ModelConfig(size=args.size, dropout=0.0).build()
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(tmp / "policy0")
    del model
    dpo = DPORoundConfig(batch_pairs=1, epochs=1, lr=1e-6, grad_accum=2)
    spec = TrainerSpec(dpo, "auto", str(tmp / "policy0"), 0, None)
    group = TrainerGroup(spec, 1, Reservation(cpus, share, share < 1.0), threads=max(1, int(cpus)))
    resources = Resources(cpus=cpus, gpus=share, threads=max(1, int(cpus)))
    pool = ActorPool(SamplerActor, args.samplers, (SamplingConfig(), resources), resources, 0, 0, "samplers")
    channel = BroadcastChannel(lambda: group.ranks[0], lambda: list(pool.actors))
    rows = []
    try:
        for k in range(1, args.rounds + 1):
            job = RoundJob(k, _pairs(tmp / f"pairs-{k}.jsonl", k), str(tmp / f"round-{k}"), "", None, True)
            summary, ref = group.train(job)
            weights = ray.get(ref)
            handle = ObjectStoreChannel().publish(ref, k)
            fetch = _fetch(pool, handle)
            channel.publish(ref, k)
            push = channel.last
            rows.append(
                {
                    "round": k,
                    "object_store_s": fetch,
                    "broadcast_s": push["weights/push_seconds"],
                    "transport": push["weights/transport"],
                    "group_formed": push.get("weights/group_formed", 0),
                    "weights_equal": _matches(pool, weights.state_dict),
                    "device": summary["device"],
                }
            )
    finally:
        pool.shutdown()
        group.shutdown()

    mb = params * 4 / 2**20
    print(f"policy: {args.size}, {params / 1e6:.1f}M parameters ({mb:.0f} MiB fp32); {args.samplers} samplers")
    print(f"trainer and samplers on {rows[0]['device'] if rows else '?'}, GPU share {share:g}, {cpus:g} CPU each")
    print(f"{'round':>5} {'object store s':>15} {'broadcast s':>12}  transport  formed  weights equal")
    for r in rows:
        print(
            f"{r['round']:>5} {r['object_store_s']:>15.3f} {r['broadcast_s']:>12.3f}  {r['transport']:<9}"
            f"  {r['group_formed']:>6}  {r['weights_equal']}"
        )
    if args.out_json:
        Path(args.out_json).write_text(
            json.dumps({"size": args.size, "params": params, "rows": rows, "machine": platform.platform()}, indent=1)
        )
    return 0 if rows and all(r["weights_equal"] and r["transport"] != "failed" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
