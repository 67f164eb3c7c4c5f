"""``clampdpo evaluator``: train, index, import and use the CLaMP-style evaluator."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestration.config import ProjectConfig

log = logging.getLogger(__name__)


def _project(args: argparse.Namespace, out: str | None = None) -> ProjectConfig:
    from clampdpo.args import load_project

    return load_project(args, extra={"evaluator.out_dir": out})


def _corpus(project: ProjectConfig, given: str | None) -> Path:
    from pipelines.data.build import ensure_corpus

    return Path(given) if given else ensure_corpus(project.data)


def _train(args: argparse.Namespace) -> int:
    from base.typed_config import to_dict
    from evaluators.report import format_report
    from evaluators.train import train_evaluator

    project = _project(args, args.out)
    result = train_evaluator(
        project.evaluator,
        _corpus(project, args.corpus),
        project.tracking.tracking_uri,
        project.tracking.experiment,
        {"evaluator": to_dict(project.evaluator), "data": to_dict(project.data)},
    )
    r = result.report
    sys.stdout.write(
        f"trained in {r['train/minutes']:.1f} min ({int(r['train/pretrain_steps'])} masked-patch + "
        f"{int(r['train/contrastive_steps'])} contrastive steps)\n{format_report(r)}\n"
        f"evaluator written to {result.out_dir}\n"
    )
    return 0


def _index(args: argparse.Namespace) -> int:
    """Features of the ground truth (and the report) for an existing model, e.g. imported CLaMP 2."""
    from evaluators.report import format_report
    from evaluators.train import train_evaluator

    project = _project(args)
    cfg = project.evaluator
    cfg.init_from, cfg.out_dir, cfg.pretrain_steps, cfg.contrastive_steps = args.dir, args.dir, 0, 0
    result = train_evaluator(
        cfg, _corpus(project, args.corpus), project.tracking.tracking_uri, project.tracking.experiment
    )
    sys.stdout.write(f"{format_report(result.report)}\nindexed {result.out_dir}\n")
    return 0


def _read_texts(path: Path) -> list[tuple[str, str]]:
    files = sorted(path.rglob("*.abc")) if path.is_dir() else [path]
    out = []
    for f in files:
        try:
            out.append((str(f), f.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as err:
            log.warning("%s: skipped (%s)", f, err)
    if not out:
        raise FileNotFoundError(f"{path}: no .abc files")
    return out


def _features(args: argparse.Namespace) -> int:
    import numpy as np

    from base import atomic
    from evaluators.evaluator import Evaluator

    ev = Evaluator.load(args.evaluator, args.device)
    items = _read_texts(Path(args.dir))
    feats = ev.features([t for _, t in items], progress=True)
    out = Path(args.out or Path(args.dir) / "features.npz")
    atomic.write_npz(out, paths=np.array([p for p, _ in items]), features=feats)
    sys.stdout.write(f"{len(items)} features ({feats.shape[1]}-d) written to {out}\n")
    return 0


def _score(args: argparse.Namespace) -> int:
    import numpy as np

    from base import atomic
    from evaluators.evaluator import Evaluator

    ev = Evaluator.load(
        args.evaluator, args.device, plagiarism_cosine=args.plagiarism_cosine or None, center=args.center
    )
    items = _read_texts(Path(args.dir))
    if args.prompt not in ev.centroids:
        log.error(
            "prompt %r has no ground truth in this evaluator; known prompts:\n  %s",
            args.prompt,
            "\n  ".join(ev.prompts),
        )
        return 2
    records = ev.score(
        [t for _, t in items],
        [args.prompt] * len(items),
        guards_on=not args.no_guards,
        with_features=True,
        progress=True,
    )
    for (path, _), rec in zip(items, records):
        sys.stdout.write(atomic.dumps_strict({"path": path, **rec.to_dict()}) + "\n")
    feats = np.array([r.feature for r in records], dtype=np.float32)
    scores = [r.clamp_score for r in records]
    summary = {"clamp_score/mean": float(np.nanmean(scores)), **ev.set_metrics(feats, [args.prompt] * len(items))}
    if not args.no_guards:
        summary["validity"] = float(np.mean([r.valid for r in records]))
        summary["plagiarism"] = float(np.mean([r.plagiarism for r in records]))
    sys.stderr.write(atomic.dumps_strict(summary) + "\n")
    return 0


def _import(args: argparse.Namespace) -> int:
    from evaluators.import_clamp import FAMILIES, import_checkpoint

    r = import_checkpoint(args.checkpoint, args.out_dir, args.family, args.m3, args.preprocess)
    sys.stdout.write(
        f"imported {FAMILIES[r.family].name}{' ' + r.variant if r.variant else ''} "
        f"({r.layers} layers, hidden {r.hidden_size}, epoch {r.epoch}, preprocessing {r.preprocess}) "
        f"to {r.out_dir}\nnext: clampdpo evaluator index {args.out_dir} (ground-truth features of "
        f"your corpus)\n"
    )
    return 0


def _add_evaluator_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="folder of interleaved .abc files (or one file)")
    parser.add_argument("--evaluator", default="runs/evaluator", help="evaluator folder (default runs/evaluator)")
    parser.add_argument("--device", help="torch device (default: cuda when available)")


def register(groups: argparse._SubParsersAction) -> None:
    from clampdpo.args import add_config_args
    from evaluators.config import PLAGIARISM_THRESHOLD

    p = groups.add_parser(
        "evaluator",
        help="the CLaMP-style music evaluator: train, index, features, score",
        description="The reward model of CLaMP-DPO: an M3-style music encoder aligned with "
        "metadata text, scoring pieces by cosine to the centroid of real pieces of their prompt.",
    )
    sub = p.add_subparsers(dest="command", metavar="<command>", required=True)

    tr = sub.add_parser(
        "train",
        help="masked-patch pre-training, then contrastive text-music training",
        description="Train an evaluator on the corpus (built if missing) with the evaluator: "
        "section of the config, index the ground truth, and print held-out checks (composer "
        "by nearest centroid, prompt margin, real vs corrupted pieces, retrieval). "
        "An independent judge: --set evaluator.subset=odd --set evaluator.seed=1 --out runs/judge.",
    )
    add_config_args(tr)
    tr.add_argument("--out", help="output folder (overrides evaluator.out_dir)")
    tr.add_argument("--corpus", help="corpus folder (default: data.out_dir, built if missing)")
    tr.set_defaults(func=_train)

    ix = sub.add_parser(
        "index",
        help="compute ground-truth features and the report for an existing model",
        description="For an evaluator folder that has model/ but no reference.npz (e.g. after "
        "import): extract the corpus's features, write reference.npz and report.json.",
    )
    ix.add_argument("dir", help="evaluator folder")
    ix.add_argument("--corpus", help="corpus folder (default: data.out_dir, built if missing)")
    add_config_args(ix)
    ix.set_defaults(func=_index)

    fe = sub.add_parser(
        "features",
        help="global CLaMP features of the .abc files of a folder",
        description="Windowed, pooled, projected and length-weighted features (CLaMP 2's "
        "definition), batched and cached by content hash; written to DIR/features.npz.",
    )
    _add_evaluator_args(fe)
    fe.add_argument("--out", help="output .npz (default DIR/features.npz)")
    fe.set_defaults(func=_features)

    sc = sub.add_parser(
        "score",
        help="CLaMP score and guard metrics of .abc files for one prompt",
        description="One JSON line per file (clamp_score, validity, plagiarism, pitch-class "
        "entropy) on stdout, and a summary with diversity and Fréchet distance on stderr.",
    )
    _add_evaluator_args(sc)
    sc.add_argument("--prompt", required=True, help="prompt key period_composer_instrumentation")
    sc.add_argument("--no-guards", action="store_true", help="CLaMP scores only (no validity / plagiarism)")
    sc.add_argument(
        "--center",
        action="store_true",
        help="score on features centred on the ground-truth mean (evaluator.center_features)",
    )
    sc.add_argument(
        "--plagiarism-cosine",
        type=float,
        default=PLAGIARISM_THRESHOLD,
        metavar="C",
        help=f"feature cosine above which a piece is plagiarism (default NotaGen's {PLAGIARISM_THRESHOLD}; "
        "0 calibrates it on the held-out split)",
    )
    sc.set_defaults(func=_score)

    im = sub.add_parser(
        "import",
        help="import published CLaMP 2, CLaMP 3 or M3 weights (music side)",
        description="Read a published checkpoint ({'model': state_dict, ...}, weights_only), tell its family by "
        "its names (CLaMP 2: music_model.*; CLaMP 3: symbolic_model.*; M3: encoder.* + decoder.*), check every "
        "name and shape, and write an evaluator folder. The text side (XLM-R) and CLaMP 3's audio side are "
        "not imported: the CLaMP score uses the music side only. Then run `evaluator index`.",
    )
    im.add_argument(
        "checkpoint", help="e.g. weights_clamp2_h_size_768_..._m3_True.pth or weights_clamp3_c2_..._p_length_512.pth"
    )
    im.add_argument("out_dir", help="evaluator folder to write")
    im.add_argument(
        "--family",
        default="auto",
        choices=["auto", "clamp2", "clamp3", "m3"],
        help="the checkpoint's family (default: told by its parameter names; a mismatch is an error)",
    )
    im.add_argument(
        "--m3",
        metavar="M3.pth",
        help="an M3 checkpoint whose char decoder to take too (only needed to continue masked-patch training)",
    )
    im.add_argument(
        "--preprocess",
        choices=["notagen", "clamp2", "clamp3"],
        help="how texts are prepared before patching (default: as the family's own extraction; "
        "'notagen' drops %% comment lines, as NotaGen's CLaMP-DPO extraction does)",
    )
    im.set_defaults(func=_import)
