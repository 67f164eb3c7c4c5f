"""``clampdpo model``: inspect how the NotaGen decoder sees a piece."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from clampdpo.args import UsageError

log = logging.getLogger(__name__)


def _patches(args: argparse.Namespace) -> int:
    import random

    from models.patchilizer import Patchilizer

    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        log.error("%s: cannot read as UTF-8 text (%s)", path, err)
        return 1
    # Patchilize with no length limit so the count (and the fits/cut verdict) is the whole piece's,
    # not whatever a random streaming cut happened to keep.
    pz = Patchilizer(patch_size=16, patch_length=sys.maxsize, stream=not args.no_stream)
    full = pz.train_patches(text, rng=random.Random(0), cut=False)
    try:
        ids = pz.to_ids(full)
    except ValueError as err:
        log.error("%s: %s", path, err)
        return 1
    for i, (p, row) in enumerate(zip(full, ids)):
        if args.show:
            shown = "".join(c if ord(c) > 2 else {0: "·", 1: "⟨bos⟩", 2: "⟨eos⟩"}[ord(c)] for c in p)
            sys.stdout.write(f"{i:>5}  {shown.replace(chr(10), '⏎')!s:<40} {row}\n")
    over = len(full) > args.patch_length
    sys.stdout.write(
        f"{path.name}: {len(full)} patches of 16 ({len(text)} chars); patch_length {args.patch_length}: "
        f"{'longer: training sees a streamed cut' if over else 'fits'}\n"
    )
    return 0


def _import(args: argparse.Namespace) -> int:
    from models.import_notagen import CheckpointError, import_notagen

    try:
        out = import_notagen(args.checkpoint, args.out_dir, size=args.size)
    except CheckpointError as err:
        log.error("%s", err)
        return 1
    sys.stdout.write(f"imported {args.checkpoint} as NotaGen-{args.size} → {out}\n")
    return 0


def _export(args: argparse.Namespace) -> int:
    from models.export_notagen import export_notagen

    done = export_notagen(args.model, args.out)
    values = " ".join(f"{k}={v}" for k, v in done.config_py.items())
    sys.stdout.write(
        f"exported {args.model} as a NotaGen checkpoint ({done.size}, {done.tensors} tensors) → {done.path}\n"
        f"NotaGen's inference config.py for it: {values}; point INFERENCE_WEIGHTS_PATH at the file\n"
    )
    return 0


def _prompts(args: argparse.Namespace) -> list[list[str]]:
    """One prompt per piece: the one given, or the prompts of a corpus split's pieces (seeded draw)."""
    from base.abc.interleave import prompt_lines

    if args.prompts_from:
        import json
        import random

        path = Path(args.prompts_from)
        rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
        if not rows:
            raise UsageError(f"--prompts-from {path}: no pieces to take prompts from")
        rng = random.Random(args.seed)
        return [
            prompt_lines(r["period"], r["composer"], r["instrumentation"])
            for r in (rng.choice(rows) for _ in range(args.n))
        ]
    if args.prompt:
        parts = args.prompt.split("_")
        if len(parts) != 3:
            raise UsageError(
                f"--prompt {args.prompt!r}: expected period_composer_instrumentation "
                "(as listed by `clampdpo data stats`)"
            )
        return [prompt_lines(*parts)] * args.n
    if args.period and args.composer and args.instrumentation:
        return [prompt_lines(args.period, args.composer, args.instrumentation)] * args.n
    raise UsageError("give --prompt KEY, all of --period, --composer and --instrumentation, or --prompts-from")


def _sample(args: argparse.Namespace) -> int:
    import time

    from tqdm import tqdm

    from base import atomic
    from models.config import load_model
    from models.sampling import Sampler
    from orchestration.config import load_config

    cfg = load_config(args.config, args.overrides).sampling
    prompts = _prompts(args)
    model = load_model(args.model)
    sampler = Sampler(model, cfg, device=args.device)
    seeds = [args.seed + i for i in range(args.n)]
    bar = tqdm(total=args.n, desc="sample", unit="piece")
    start = time.perf_counter()
    samples = sampler.generate(prompts, seeds, progress=lambda s: bar.update(1))
    seconds = time.perf_counter() - start
    bar.close()
    out = Path(args.out)
    rows = []
    valid = 0
    for s in samples:
        name = f"sample_{s.seed:06d}"
        atomic.write_text(out / "original" / f"{name}.abc", s.text)
        row = {
            "seed": s.seed,
            "prompt": [ln.strip("%\n") for ln in s.prompt],
            "finished": s.finished,
            "patches": s.patches,
            "chars": s.chars,
            "stream_cuts": s.stream_cuts,
            "file": f"original/{name}.abc",
            "error": s.error,
        }
        if s.interleaved:
            atomic.write_text(out / "interleaved" / f"{name}.abc", s.interleaved)
            row["interleaved"] = f"interleaved/{name}.abc"
        if args.check:
            from evaluators.validity import check_validity

            v = check_validity(s.interleaved)
            row.update(parses=v.parses, aligned=v.aligned, valid=v.valid, reason=v.reason)
            valid += v.valid
        rows.append(row)
    atomic.write_jsonl(out / "samples.jsonl", rows)
    chars = sum(s.chars for s in samples)
    sys.stdout.write(
        f"{len(samples)} pieces ({sum(s.finished for s in samples)} finished) in {seconds:.1f} s, "
        f"{chars / seconds:.0f} chars/s → {out}\n"
    )
    if args.check:
        sys.stdout.write(
            f"valid (music21 parses, bars aligned after unrotation): {valid}/{len(samples)} = "
            f"{valid / len(samples):.0%}\n"
        )
    if args.print:
        sys.stdout.write(samples[0].text + "\n")
    return 0


def register(groups: argparse._SubParsersAction) -> None:
    p = groups.add_parser(
        "model",
        help="the NotaGen decoder: patches, import, sampling",
        description="Commands around NotaGen's two-level decoder.",
    )
    sub = p.add_subparsers(dest="command", metavar="<command>", required=True)
    pt = sub.add_parser(
        "patches",
        help="show the 16-character patches and ids of an ABC file",
        description="Patchilize a NotaGen-form ABC file as training does (bos/eos patches, "
        "[r:i/n] line prefixes in stream mode) and report whether it fits the patch length.",
    )
    pt.add_argument("file", help="an ABC file, e.g. corpus/train/<id>.abc")
    pt.add_argument("--patch-length", type=int, default=1024, help="patches the model sees (default 1024)")
    pt.add_argument("--no-stream", action="store_true", help="no [r:i/n] prefixes, plain truncation")
    pt.add_argument("--show", action="store_true", help="print every patch with its ids")
    pt.set_defaults(func=_patches)

    from clampdpo.args import add_config_args
    from models.sizes import SIZES

    im = sub.add_parser(
        "import-notagen",
        help="convert an original NotaGen checkpoint (.pth) to our format",
        description="Read NotaGen's {'model': state_dict} (weights_only), map its parameter names, "
        "check every shape against --size, and write a save_pretrained folder.",
    )
    im.add_argument("checkpoint", help="NotaGen .pth file, e.g. weights_notagen_pretrain_p_size_16_...pth")
    im.add_argument("out_dir", help="folder to write (config.json + model.safetensors)")
    im.add_argument(
        "--size",
        "--preset",
        dest="size",
        default="large",
        choices=list(SIZES),
        help="the checkpoint's size (default large)",
    )
    im.set_defaults(func=_import)
    ex = sub.add_parser(
        "export-notagen",
        help="write a model (e.g. a campaign's aligned policy) as a NotaGen checkpoint (.pth)",
        description="The inverse of import-notagen: {'model': state_dict} with NotaGen's parameter names, for "
        "NotaGen's own inference script and demo. Prints the size and the config.py values NotaGen needs to "
        "build that network; a model NotaGen's class cannot express is refused, naming the difference.",
    )
    ex.add_argument("model", help="saved model folder (a campaign's round-NN/dpo/policy, sft model/, ...)")
    ex.add_argument("out", help=".pth file to write")
    ex.set_defaults(func=_export)

    sa = sub.add_parser(
        "sample",
        help="generate pieces for a prompt (batched, KV-cached)",
        description="Sample pieces from a saved model for one period/composer/instrumentation "
        "prompt with the sampling: section of the config (top-k 9, top-p 0.9, temperature 1.2 "
        "by default). Writes original/ (raw NotaGen form), interleaved/ (CLaMP-ready) and "
        "samples.jsonl; one seed per piece (--seed, --seed+1, ...) regenerates it.",
    )
    sa.add_argument("model", help="saved model folder (train sft output model/, or import-notagen output)")
    sa.add_argument(
        "--prompt", help="prompt key period_composer_instrumentation, e.g. 'Baroque_Bach, Johann Sebastian_Choral'"
    )
    sa.add_argument("--period", help="prompt period, e.g. Baroque (with --composer and --instrumentation)")
    sa.add_argument("--composer", help="prompt composer, e.g. 'Bach, Johann Sebastian'")
    sa.add_argument("--instrumentation", help="prompt instrumentation, e.g. Choral")
    sa.add_argument(
        "--prompts-from",
        metavar="SPLIT.jsonl",
        help="take each piece's prompt from a corpus split index, e.g. corpus/eval.jsonl (seeded draw)",
    )
    sa.add_argument("-n", type=int, default=4, help="pieces to generate (default 4)")
    sa.add_argument("--seed", type=int, default=0, help="seed of the first piece (default 0)")
    sa.add_argument("--out", default="samples", help="output folder (default samples/)")
    sa.add_argument("--device", help="torch device (default: where the model loads; cuda if you move it)")
    sa.add_argument("--check", action="store_true", help="also check validity (music21 parse, bar alignment)")
    sa.add_argument("--print", action="store_true", help="print the first piece")
    add_config_args(sa)
    sa.set_defaults(func=_sample)
