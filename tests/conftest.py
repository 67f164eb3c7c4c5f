"""Shared test data: small real scores, pieces and corpora written by the tests themselves (no downloads).

Test modules import the constants and builders from here; nothing else is shared between test modules.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from filelock import FileLock

# ---------------------------------------------------------------------------- test order

# The files that take longest, longest first (xdist hands out files in this order: pytest -n 2 --dist loadfile
# --no-loadscope-reorder). The end-to-end files, mostly waiting on Ray, DeepSpeed and subprocess start-up, run
# first and overlap with the many quick files on the other worker; the run then ends on files of a second or
# less, so neither worker finishes long before the other. The two-node test starts once the smoke campaign
# (test_campaign's, on the other worker) has trained its parts, and runs beside its rounds: two files ahead of
# it leave that time.
SLOW_FIRST = (
    "test_campaign.py",
    "test_trainer_group.py",
    "test_sft_launch.py",
    "test_cluster_and_kills.py",
    "test_weight_sync.py",
    "test_actors.py",
    "test_campaign_driver.py",
    "test_cli.py",
    "test_train_evaluator.py",
    "test_fuzz_readers.py",
    "test_loopback.py",
    "test_stage_names.py",
    "test_suite_rules.py",
    "test_hostile_inputs.py",
    "test_sampling.py",
    "test_model_and_features.py",
)


def pytest_collection_modifyitems(items: list) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(SLOW_FIRST)))


# ---------------------------------------------------------------------------- property-based fuzzing

# Hypothesis settings of every fuzz test: bounded and derandomised, so CI runs the same examples each time;
# CLAMPDPO_FUZZ_EXAMPLES=2000 runs more of them on demand (under `ulimit -v`: some readers are memory-hungry).
FUZZ_EXAMPLES = int(os.environ.get("CLAMPDPO_FUZZ_EXAMPLES", "250"))


def _fuzz_settings():
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=FUZZ_EXAMPLES,
        derandomize=True,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
        database=None,
    )


FUZZ = _fuzz_settings()


# ---------------------------------------------------------------------------- DPO pairs on a tiny policy

DPO_PROMPT = "%Folk\n%Traditional, Irish\n%Solo melody\n"
DPO_GOOD = "L:1/8\nM:6/8\nK:D\nV:1 treble\n[r:0/1][V:1]DFA dfa|gfe d3|\n[r:1/0][V:1]AFD DFA|d3 d3|]\n"
DPO_BAD = "L:1/8\nM:6/8\nK:D\nV:1 treble\n[r:0/0][V:1]zzz zzz|^c^c^c =c=c=c|\n"


def tiny_policy(seed: int = 0):
    """A one-layer NotaGen small enough to train a DPO step in a test."""
    import torch

    from models.notagen import NotaGenConfig, NotaGenForCausalLM

    torch.manual_seed(seed)
    return NotaGenForCausalLM(
        NotaGenConfig(patch_num_layers=1, char_num_layers=1, hidden_size=64, patch_length=64, dropout=0.0)
    )


def write_round_pairs(path: Path, k: int, n: int = 8) -> str:
    """Round k's pair file: n copies of the good piece chosen over the bad one."""
    from pipelines.dpo.dataset import PairRecord, write_pairs

    pairs = [
        PairRecord(k, "p", DPO_PROMPT, f"c{i}", f"r{i}", DPO_GOOD, DPO_BAD, 0.9, 0.1, i, 100 + i) for i in range(n)
    ]
    write_pairs(path, pairs, {"round": k})
    return str(path)


def patch_batch(texts: list[str], patch_length: int = 64):
    """(patches, attention mask) of pieces in NotaGen's training form, padded to the longest."""
    import torch

    from models.patchilizer import Patchilizer

    pz = Patchilizer(patch_length=patch_length)
    encoded = [pz.encode_train(t) for t in texts]
    length = max(map(len, encoded))
    patches = torch.zeros(len(texts), length, 16, dtype=torch.long)
    mask = torch.zeros(len(texts), length, dtype=torch.long)
    for i, e in enumerate(encoded):
        patches[i, : len(e)] = torch.tensor(e)
        mask[i, : len(e)] = 1
    return patches, mask


# ---------------------------------------------------------------------------- pieces in NotaGen form

# A two-voice chorale and a folk tune in NotaGen's training form (prompt lines, then interleaved bars).
PIECE = (
    "%Baroque\n%Bach, Johann Sebastian\n%Choral\nL:1/8\nM:4/4\nK:G\nV:1 treble\nV:2 bass\n"
    "[V:1]G2 A2 B2 c2|[V:2]G,8|\n[V:1]d8|[V:2]D,4 C,4|\n[V:1]B4 A4|[V:2]G,4 D,4|\n[V:1]G8|][V:2]G,,8|]\n"
)
FOLK = "%Romantic\n%Traditional\n%Keyboard\nL:1/8\nM:6/8\nK:D\nV:1 treble\n[V:1]|:DFA dfa|\n[V:1]gfe d3:|\n"


def musicxml(
    parts: list[tuple[str, list[list[str]]]], title: str = "Test piece", composer: str = "Test Composer", beats: int = 4
) -> str:
    """A MusicXML document: each part is (name, measures), each measure a list of quarter notes such as
    'C4', 'F#4', 'Bb3' or 'r' (a quarter rest). Time signature beats/4, key of C."""
    part_list = "".join(
        f'<score-part id="P{i + 1}"><part-name>{name}</part-name></score-part>' for i, (name, _) in enumerate(parts)
    )
    body = []
    for i, (_, measures) in enumerate(parts):
        ms = []
        for m, notes in enumerate(measures, start=1):
            attrs = ""
            if m == 1:
                attrs = (
                    f"<attributes><divisions>1</divisions><key><fifths>0</fifths></key>"
                    f"<time><beats>{beats}</beats><beat-type>4</beat-type></time>"
                    f"<clef><sign>G</sign><line>2</line></clef></attributes>"
                )
            ns = []
            for n in notes:
                if n == "r":
                    ns.append("<note><rest/><duration>1</duration><type>quarter</type></note>")
                    continue
                step, rest = n[0], n[1:]
                alter = {"#": 1, "b": -1}.get(rest[0], 0) if rest[0] in "#b" else 0
                octave = rest[1:] if alter else rest
                alt = f"<alter>{alter}</alter>" if alter else ""
                ns.append(
                    f"<note><pitch><step>{step}</step>{alt}<octave>{octave}</octave></pitch>"
                    f"<duration>1</duration><type>quarter</type></note>"
                )
            ms.append(f'<measure number="{m}">{attrs}{"".join(ns)}</measure>')
        body.append(f'<part id="P{i + 1}">{"".join(ms)}</part>')
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<score-partwise version="3.1">'
        f"<work><work-title>{title}</work-title></work>"
        f'<identification><creator type="composer">{composer}</creator></identification>'
        f"<part-list>{part_list}</part-list>{''.join(body)}</score-partwise>\n"
    )


DUET = [
    ("Violin", [["C5", "D5", "E5", "F5"], ["G5", "r", "r", "r"], ["E5", "D5", "C5", "r"], ["C5", "C5", "C5", "C5"]]),
    ("Violoncello", [["C3", "r", "G3", "r"], ["r", "r", "r", "r"], ["G3", "G3", "C3", "r"], ["C3", "E3", "G3", "C4"]]),
]

FOLK_ABC = """% a two-tune file, as folk collections ship them
X:1
T:First Reel
C:Trad.
M:4/4
L:1/8
K:G
|:GABc dBGB|cBAG FDEF|GABc dBGB|cAFA G4:|

X:2
T:Second Jig
M:6/8
L:1/8
K:D
|:DFA dAF|GBd gdB|AFA dcB|AFE D3:|
"""


@pytest.fixture
def score_dir(tmp_path: Path) -> Path:
    """A folder of good scores in three formats: a MusicXML duet, a two-tune ABC file, a Humdrum duet."""
    d = tmp_path / "scores"
    d.mkdir()
    (d / "duet.musicxml").write_text(musicxml(DUET, title="Duet", composer="Johann Sebastian Bach"))
    (d / "reels.abc").write_text(FOLK_ABC)
    (d / "canon.krn").write_text(
        "!!!COM: Mozart, Wolfgang Amadeus\n**kern\t**kern\n*M4/4\t*M4/4\n=1\t=1\n4c\t4e\n4d\t4f\n4e\t4g\n4f\t4a\n"
        "=2\t=2\n4g\t4b\n4a\t4cc\n4b\t4dd\n4cc\t4ee\n=3\t=3\n4g\t4e\n4e\t4c\n2c\t2C\n"
        "=4\t=4\n4c\t4e\n4d\t4f\n2e\t2g\n==\t==\n*-\t*-\n"
    )
    return d


# ---------------------------------------------------------------------------- small corpora of clear styles

STYLES = {
    # style: (period, composer, instrumentation)
    "jig": ("Folk", "Traditional, Irish", "Solo melody"),
    "reel": ("Folk", "Traditional, Scottish", "Solo melody"),
    "chorale": ("Baroque", "Bach, Johann Sebastian", "Chorus"),
}


def jig(rng: random.Random, bars: int) -> str:
    body = [f"[V:1]{rng.choice(['DFA', 'AFD', 'dfa'])} {rng.choice(['d3', 'f3', 'gfe'])}|\n" for _ in range(bars)]
    return "L:1/8\nM:6/8\nK:D\nV:1 treble\n" + "".join(body)


def reel(rng: random.Random, bars: int) -> str:
    body = [f"[V:1]{rng.choice(['GABc', 'dcBA', 'GBdB'])} {rng.choice(['d2B2', 'c2A2', 'G4'])}|\n" for _ in range(bars)]
    return "L:1/8\nM:4/4\nK:G\nV:1 treble\n" + "".join(body)


def chorale(rng: random.Random, bars: int) -> str:
    body = [
        f"[V:1]{' '.join(rng.choice(['G2', 'A2', 'B2', 'c2', 'd2']) for _ in range(4))}|"
        f"[V:2]{rng.choice(['G,8', 'D,8', 'C,8'])}|\n"
        for _ in range(bars)
    ]
    return "L:1/8\nM:4/4\nK:G\nV:1 treble\nV:2 bass\n" + "".join(body)


MAKERS = {"jig": jig, "reel": reel, "chorale": chorale}


def write_corpus(
    root: Path, bars: dict[str, tuple[int, int]], per_style: int, eval_per_style: int, seed: int = 0
) -> Path:
    """A built corpus as ``data build`` writes it: interleaved/ (CLaMP-ready), train/ (NotaGen form with the
    prompt lines), train.jsonl and eval.jsonl. ``bars`` names the styles and each one's range of bar counts;
    the last ``eval_per_style`` pieces of each style are the eval split. Piece ids are style + index."""
    rng = random.Random(seed)
    for d in ("train", "interleaved"):
        (root / d).mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[dict]] = {"train": [], "eval": []}
    for i in range(per_style):
        for style, (low, high) in bars.items():
            period, composer, inst = STYLES[style]
            pid = f"{style}{i:02d}"
            body = MAKERS[style](rng, rng.randint(low, high))
            (root / "interleaved" / f"{pid}.abc").write_text(body)
            (root / "train" / f"{pid}.abc").write_text(f"%{period}\n%{composer}\n%{inst}\n{body}")
            row = {
                "id": pid,
                "path": f"train/{pid}.abc",
                "prompt": f"{period}_{composer}_{inst}",
                "period": period,
                "composer": composer,
                "instrumentation": inst,
                "title": f"{style} {i}",
            }
            splits["eval" if i >= per_style - eval_per_style else "train"].append(row)
    for split, rows in splits.items():
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def two_style_corpus(root: Path, n: int = 16) -> Path:
    """Chorales and Irish jigs of varied lengths: what an evaluator must tell apart."""
    return write_corpus(root, {"chorale": (6, 10), "jig": (8, 12)}, per_style=n, eval_per_style=3)


def campaign_corpus(root: Path) -> Path:
    """Three prompts (jigs, reels, chorales) with enough pieces each for a campaign's centroids."""
    return write_corpus(root, {"jig": (6, 6), "reel": (6, 6), "chorale": (5, 5)}, per_style=14, eval_per_style=3)


def campaign_rows(folder: Path) -> dict[str, list[dict]]:
    """Every samples and scores file of a campaign's rounds, by relative path, without the fields that say
    when and where a row was made (what two runs of one campaign must agree on)."""
    out = {}
    for f in sorted(folder.glob("round-*/**/*.jsonl")):
        if f.name in ("samples.jsonl", "scores.jsonl"):
            rows = [json.loads(x) for x in f.read_text().splitlines()]
            out[str(f.relative_to(folder))] = [
                {k: v for k, v in r.items() if k != "node" and not k.endswith("_seconds")} for r in rows
            ]
    return out


def campaign_config(tmp: Path, corpus: Path, out: Path, **campaign: object) -> Path:
    """A YAML config for a campaign of tiny everything (seconds per stage on 2 cores)."""
    evaluator = {
        "size": "tiny",
        "train_patches": 32,
        "pretrain_steps": 10,
        "contrastive_steps": 20,
        "batch_size": 8,
        "eval_every": 20,
        "log_every": 10,
        "min_prompt_pieces": 3,
        "dropout": 0.0,
        "plagiarism_cosine": None,
    }
    cfg = {
        "data": {"out_dir": str(corpus)},
        "model": {
            "size": "tiny",
            "hidden_size": 64,
            "patch_num_layers": 1,
            "char_num_layers": 1,
            "patch_length": 64,
            "dropout": 0.0,
        },
        "train": {
            "max_steps": 80,
            "batch_pieces": 8,
            "lr": 3e-3,
            "warmup_steps": 5,
            "eval_every": 40,
            "save_every": 80,
            "log_every": 20,
            "eval_pieces": 8,
        },
        "cluster": {"num_workers": 1, "cpus_per_worker": 1},
        "sampling": {"max_patches": 48, "batch_size": 8},
        "evaluator": {**evaluator, "subset": "even"},
        "judge": {**evaluator, "subset": "odd", "seed": 1},
        "dpo": {"select_portion": 0.25, "lr": 1e-4, "epochs": 1, "batch_pairs": 2, "max_pairs_per_prompt": 4},
        "campaign": {
            "out_dir": str(out),
            "rounds": 1,
            "heldout_keys": ["Folk_Traditional, Scottish_Solo melody"],
            "min_prompt_pieces": 5,
            "samples_per_prompt": 8,
            "eval_samples_per_prompt": 4,
            "unit_size": 4,
            "cpus_per_sampler": 1,
            "cpus_per_scorer": 1,
            "cache_dir": str(tmp / "cache"),
            **campaign,
        },
    }
    path = tmp / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# ---------------------------------------------------------------------------- published checkpoint layouts


def notagen_layout(cfg):  # noqa: ANN001, ANN201 (torch types, imported lazily)
    """A module with NotaGen's parameter names and shapes (``NotaGenLMHeadModel``), built from transformers'
    GPT-2 classes: the layout of a published NotaGen checkpoint."""
    import torch
    from transformers import GPT2LMHeadModel, GPT2Model

    layout = torch.nn.Module()
    layout.patch_level_decoder = torch.nn.Module()
    layout.patch_level_decoder.patch_embedding = torch.nn.Linear(16 * 128, cfg.hidden_size)
    layout.patch_level_decoder.base = GPT2Model(cfg.patch_config())
    layout.char_level_decoder = torch.nn.Module()
    layout.char_level_decoder.base = GPT2LMHeadModel(cfg.char_config())
    return layout


# ---------------------------------------------------------------------------- trained tiny parts of a campaign

TINY_MODEL = {"hidden_size": 64, "patch_num_layers": 1, "char_num_layers": 1, "patch_length": 64, "dropout": 0.0}


@pytest.fixture(scope="session")
def tiny_parts(tmp_path_factory):  # noqa: ANN201
    """A campaign corpus, a tiny policy trained on it for 80 steps and a tiny evaluator: the parts a campaign
    test needs when what it checks is the orchestration, not the training (which test_campaign's smoke run
    and test_sft_launch check through the real stack). The policy is trained here with plain torch, in a few
    seconds, so that its candidates are valid music often enough to make pairs."""
    # trained once for the whole run: xdist's workers share their base folder's parent, and the first to come
    # trains while the other waits on the lock
    root = _shared_root(tmp_path_factory)
    tmp = root / "tiny-parts"
    with FileLock(str(root / "tiny-parts.lock")):
        if not (tmp / "trained").is_file():
            shutil.rmtree(tmp, ignore_errors=True)  # what a worker that died midway left
            _train_tiny_parts(tmp)
            (tmp / "trained").write_text("")
    return {"tmp": tmp, "corpus": tmp / "corpus", "policy": tmp / "policy", "evaluator": tmp / "evaluator"}


def _shared_root(tmp_path_factory) -> Path:  # noqa: ANN001
    """A folder every xdist worker of this run sees (their base folders' parent), for what is made once a run."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


def _train_tiny_parts(tmp: Path) -> None:
    import torch

    from evaluators.config import EvaluatorConfig
    from evaluators.train import train_evaluator
    from models.notagen import NotaGenConfig, NotaGenForCausalLM
    from models.patchilizer import Patchilizer
    from pipelines.train.sft import PatchBatches, load_split

    corpus = campaign_corpus(tmp / "corpus")
    torch.manual_seed(0)
    model = NotaGenForCausalLM(NotaGenConfig(**TINY_MODEL))
    batches = PatchBatches(load_split(corpus, "train"), Patchilizer(patch_length=64), seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(80):
        loss, _ = model.patch_loss(*batches.micro_batch(step, 0, 0, 1, 8, 1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(tmp / "policy")
    train_evaluator(
        EvaluatorConfig(
            out_dir=str(tmp / "evaluator"),
            pretrain_steps=10,
            contrastive_steps=20,
            batch_size=8,
            train_patches=32,
            min_prompt_pieces=3,
            dropout=0.0,
        ),
        corpus,
    )


# ---------------------------------------------------------------------------- the smoke campaign

SMOKE_ROUNDS = 2
SMOKE_SAMPLES = 8  # a prompt's candidates a round: its best and worst quarter make its pairs (at most 4)


def smoke_config(tmp: Path, corpus: Path, out: Path, **campaign: object) -> Path:
    """The smoke campaign's config: it trains its own policy, evaluator and judge; two samplers and a scorer."""
    path = campaign_config(
        tmp,
        corpus,
        out,
        rounds=SMOKE_ROUNDS,
        unit_size=2,
        samples_per_prompt=SMOKE_SAMPLES,
        num_samplers=2,
        num_scorers=1,
        weight_channel="object_store",
        **campaign,
    )
    cfg = yaml.safe_load(path.read_text())
    # DPO long enough that a trainer can be killed mid-round; music21's reader gives scoring some length
    cfg["dpo"].update({"epochs": 3, "require_music21_reads": True})
    path.write_text(yaml.safe_dump(cfg))
    return path


class SmokeCampaign:
    """The smoke campaign, through the real CLI on a local Ray: it trains its parts (SFT on Ray Train with
    DeepSpeed, the evaluator, the judge), has its driver killed (with the Ray it started) once round 1 has
    sampled a unit, and is resumed to its end. Made once a test run and shared by xdist's workers under a file
    lock, as ``tiny_parts`` is: test_campaign.py checks it, and test_cluster_and_kills.py resumes a two-node twin
    of it, which takes the trained parts from its cache, to exactly its samples, scores and DPO losses."""

    def __init__(self, root: Path):
        self.tmp = root / "smoke-campaign"
        self.lock = FileLock(str(root / "smoke-campaign.lock"))
        self.paths = {"tmp": self.tmp, "corpus": self.tmp / "corpus", "out": self.tmp / "smoke"}
        self.paths["config"] = self.tmp / "smoke.yaml"

    def result(self) -> dict:
        """The finished campaign: made here if no worker has made it, waited for if one is making it."""
        with self.lock:
            if not (self.tmp / "done.json").is_file():
                shutil.rmtree(self.tmp, ignore_errors=True)  # what a worker that died midway left
                _run_smoke(self.tmp)
        return {**json.loads((self.tmp / "done.json").read_text()), **self.paths}

    def set_up(self) -> dict:
        """The campaign's paths once its set-up stages are done (its parts and the corpus's music statistics are
        in its cache): where another worker is making it, without waiting for its rounds."""
        import time

        from filelock import Timeout

        set_up = self.paths["out"] / "markers" / "real.json"
        deadline = time.time() + 900
        while True:
            try:
                self.lock.acquire(timeout=0)
            except Timeout:  # another worker is making it
                if set_up.is_file():
                    return self.paths
                assert time.time() < deadline, "timed out waiting for the smoke campaign's set-up"
                time.sleep(0.5)
                continue
            self.lock.release()
            self.result()  # nobody is making it: all of it, here
            return self.paths


@pytest.fixture(scope="session")
def smoke_campaign(tmp_path_factory) -> SmokeCampaign:  # noqa: ANN001
    return SmokeCampaign(_shared_root(tmp_path_factory))


@pytest.fixture(scope="session")
def smoke(smoke_campaign: SmokeCampaign) -> dict:
    """The finished smoke campaign (``SmokeCampaign``), its resumed run's output and how far the kill let it go."""
    return smoke_campaign.result()


def wait_for(proc: subprocess.Popen, ready: Any, what: str, timeout: float = 600) -> None:
    """Until ``ready()``, while the campaign ``proc`` runs: the moment a test kills something in it."""
    import time

    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, f"the campaign ended before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _run_smoke(tmp: Path) -> None:
    import signal
    import sys

    tmp.mkdir(parents=True)
    out = tmp / "smoke"
    cfg = smoke_config(tmp, campaign_corpus(tmp / "corpus"), out)
    cli = [sys.executable, "-m", "clampdpo"]
    repo = Path(__file__).resolve().parents[1]
    with open(tmp / "killed.stderr", "w") as err:
        proc = subprocess.Popen(
            cli + ["campaign", "run", "--config", str(cfg)],
            cwd=repo,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        units = out / "round-01" / "samples" / "units"
        try:
            wait_for(proc, lambda: units.is_dir() and any(units.glob("unit-*.jsonl")), "round 1's first sample", 900)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started, mid-round
            proc.wait()
    killed = {
        "units_when_killed": len(list(units.glob("unit-*.jsonl"))),
        "sampled_when_killed": (out / "markers" / "round-01.sample.json").exists(),
    }
    resumed = subprocess.run(
        cli + ["campaign", "resume", str(out)], capture_output=True, text=True, cwd=repo, timeout=900
    )
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    done = {**killed, "stdout": resumed.stdout, "stderr": resumed.stderr}
    (tmp / "done.json").write_text(json.dumps(done))


def planned_samples(policy: Any, specs: list, sampling: Any = None) -> list[str]:
    """The texts the plan's specs ask for, generated in this process with one thread (as each sampler actor
    runs): an oracle independent of the campaign's actors and work units. ``policy``: a saved policy's folder
    or the model itself; ``sampling``: the campaign tests' sampling config unless given."""
    import torch

    from models.notagen import NotaGenForCausalLM
    from models.sampling import Sampler
    from models.sampling_config import SamplingConfig

    torch.set_num_threads(1)
    model = NotaGenForCausalLM.from_pretrained(policy) if isinstance(policy, (str, Path)) else policy
    sampler = Sampler(model, sampling or SamplingConfig(max_patches=48, batch_size=8))
    return [s.text for s in sampler.generate([list(s.lines) for s in specs], [s.seed for s in specs])]


CLAMP_LAYOUT = {"hidden": 64, "layers": 2, "projection": 48}  # the small size of the CLaMP layouts below


def bert(hidden: int, layers: int, positions: int):  # noqa: ANN201
    """A BertModel as upstream builds them (vocab 1, heads hidden/64, FFN 4×), pooler included."""
    from transformers import BertConfig, BertModel

    return BertModel(
        BertConfig(
            vocab_size=1,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=max(1, hidden // 64),
            intermediate_size=4 * hidden,
            max_position_embeddings=positions,
        )
    )


def patch_encoder():  # noqa: ANN201
    """M3PatchEncoder's layout: patch_embedding (one-hot 64×128 → hidden) + base."""
    import torch.nn as nn

    enc = nn.Module()
    enc.patch_embedding = nn.Linear(64 * 128, CLAMP_LAYOUT["hidden"])
    enc.base = bert(CLAMP_LAYOUT["hidden"], CLAMP_LAYOUT["layers"], 512)
    return enc


def clamp_layout(music: str, extra: tuple[str, ...]):  # noqa: ANN201
    """CLaMP 2 (music='music') or CLaMP 3 (music='symbolic', with an audio side): CLaMP2Model's / CLaMP3Model's
    top-level names (sanderwood/clamp2 and clamp3 code/utils.py), with small sizes."""
    import torch
    import torch.nn as nn

    proj = CLAMP_LAYOUT["projection"]
    m = nn.Module()
    setattr(m, f"{music}_model", patch_encoder())
    setattr(m, f"{music}_proj", nn.Linear(CLAMP_LAYOUT["hidden"], proj))
    m.text_model = bert(32, 1, 16)  # stands in for XLM-R: the importer must leave the text side out
    m.text_proj = nn.Linear(32, proj)
    if "audio" in extra:
        m.audio_model = bert(32, 1, 16)
        m.audio_proj = nn.Linear(32, proj)
    torch.manual_seed(0)
    for p in m.parameters():  # non-trivial biases / norms, so a wrong mapping shows in the features
        p.data.add_(torch.randn_like(p) * 0.02)
    return m.eval()


def m3_layout():  # noqa: ANN201
    """M3Model's names: encoder (M3PatchEncoder) and decoder.base (a GPT-2 LM head model over 64 chars)."""
    import torch.nn as nn
    from transformers import GPT2Config, GPT2LMHeadModel

    h = CLAMP_LAYOUT["hidden"]
    m = nn.Module()
    m.encoder = patch_encoder()
    m.decoder = nn.Module()
    m.decoder.base = GPT2LMHeadModel(
        GPT2Config(vocab_size=128, n_positions=64, n_embd=h, n_layer=1, n_head=1, n_inner=4 * h)
    )
    return m


# ---------------------------------------------------------------------------- a real browser, offline
# Open a page in Debian's headless Chromium with the network off, the way a test looks at what people see:
# ``open_page`` loads a file, lets its scripts run, and returns the DOM after them, the console messages and a
# screenshot. The network is cut by a network namespace of its own when ``unshare -n`` works here, and in any
# case by a proxy that goes nowhere, so a page that fetches anything from the web shows it as errors.

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WHY_SKIPPED = "Debian's chromium is not installed (.ci/run installs it with apt-get; apt-get install chromium)"


@dataclass
class Page:
    dom: str
    console: list[str]
    screenshot: Path


def _offline_prefix() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


def open_page(path: Path | str, screenshot: Path, width: int = 1400, height: int = 2400, wait_ms: int = 8000) -> Page:
    """The DOM (after scripts ran for ``wait_ms`` of virtual time), console lines and a PNG of ``path`` (a file,
    or an http URL on 127.0.0.1: the only host the browser can reach)."""
    assert CHROMIUM, WHY_SKIPPED
    with tempfile.TemporaryDirectory() as profile:
        flags = [
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-quic", f"--user-data-dir={profile}",
            "--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--enable-logging=stderr", "--v=0", f"--virtual-time-budget={wait_ms}",
            "--autoplay-policy=no-user-gesture-required", f"--window-size={width},{height}",
        ]  # fmt: skip
        env = {**os.environ, "HOME": profile}
        url = path if isinstance(path, str) else path.resolve().as_uri()
        # a file opens with no network at all; a page served here keeps the machine's loopback, and nothing else
        # (every other host resolves nowhere, every proxied request goes to a closed port)
        offline = _offline_prefix() if not isinstance(path, str) else []
        # one load gives both: the DOM on stdout and the screenshot, each once the virtual time has run out
        run = subprocess.run(
            offline + [CHROMIUM, *flags, "--dump-dom", f"--screenshot={screenshot}", url],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
    console = [ln for ln in run.stderr.splitlines() if re.search(r"CONSOLE|Uncaught", ln)]
    return Page(run.stdout, console, screenshot)
