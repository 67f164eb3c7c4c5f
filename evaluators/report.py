"""Held-out checks that an evaluator measures music: composer by nearest centroid, prompt margins,
text→music retrieval, and real pieces against corrupted copies of themselves."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np

from evaluators.corrupt import random_notes, shuffle_bars
from evaluators.data import Piece, metadata_text
from evaluators.features import FeatureExtractor
from evaluators.model import ClampModel
from evaluators.scores import GLOBAL, centroids, cosine, cosine_matrix, nearest


def evaluation_report(
    extractor: FeatureExtractor,
    train: list[Piece],
    held_out: list[Piece],
    min_pieces: int = 5,
    seed: int = 0,
    model: ClampModel | None = None,
    center: bool = False,
) -> dict[str, float]:
    """Metrics of an evaluator on held-out pieces, with train pieces as the ground truth.

    ``center`` measures centroids and scores on features minus the mean train feature, the score an
    evaluator with ``center_features`` gives (retrieval stays in the raw text-music space).
    """
    rng = random.Random(seed)
    raw_held = extractor.extract([p.text for p in held_out])
    train_f = extractor.extract([p.text for p in train])
    shift = train_f.mean(0) if center else np.zeros(train_f.shape[1], dtype=train_f.dtype)
    train_f, held_f = train_f - shift, raw_held - shift
    out: dict[str, float] = {"score/centred": float(center)}

    # composer by nearest centroid, over composers with enough train pieces
    counts = Counter(p.composer for p in train)
    classes = {c for c, n in counts.items() if n >= min_pieces and c}
    keep = [i for i, p in enumerate(train) if p.composer in classes]
    cents = centroids(train_f[keep], [train[i].composer for i in keep], with_global=False)
    test = [i for i, p in enumerate(held_out) if p.composer in classes]
    if test and len(cents) >= 2:
        guess = nearest(held_f[test], cents)
        out["composer/accuracy"] = float(np.mean([g == held_out[i].composer for g, i in zip(guess, test)]))
        out["composer/chance"] = 1.0 / len(cents)
        out["composer/majority"] = float(np.mean([held_out[i].composer == counts.most_common(1)[0][0] for i in test]))
        out["composer/classes"] = float(len(cents))
        out["composer/held_out_pieces"] = float(len(test))

    # own-prompt centroid against the others
    pcounts = Counter(p.prompt for p in train)
    prompts = {k for k, n in pcounts.items() if n >= min_pieces}
    keep = [i for i, p in enumerate(train) if p.prompt in prompts]
    pcents = centroids(train_f[keep], [train[i].prompt for i in keep])
    names = [k for k in pcents if k != GLOBAL]
    test = [i for i, p in enumerate(held_out) if p.prompt in prompts]
    if test and len(names) >= 2:
        sims = cosine_matrix(held_f[test], np.stack([pcents[k] for k in names]))
        own = np.array([names.index(held_out[i].prompt) for i in test])
        own_score = sims[np.arange(len(test)), own]
        others = (sims.sum(1) - own_score) / (len(names) - 1)
        out["prompt/own_score"] = float(own_score.mean())
        out["prompt/other_score"] = float(others.mean())
        out["prompt/margin"] = float((own_score - others).mean())
        out["prompt/own_is_best"] = float((sims.argmax(1) == own).mean())

        # real against corrupted copies, scored against their own prompt's centroid
        real = [held_out[i].text for i in test]
        for name, fn in (("shuffled_bars", shuffle_bars), ("random_notes", random_notes)):
            bad = extractor.extract([fn(t, rng) for t in real]) - shift
            bad_score = np.array([cosine(bad[k][None], pcents[held_out[i].prompt])[0] for k, i in enumerate(test)])
            out[f"corrupt/{name}_score"] = float(bad_score.mean())
            out[f"corrupt/real_beats_{name}"] = float((own_score > bad_score).mean())
        out["corrupt/real_score"] = float(own_score.mean())

    # text → music retrieval among the held-out pieces
    if model is not None and len(held_out) >= 5:
        import torch

        from evaluators.model import text_ids

        ids, mask = text_ids([metadata_text(p.meta) for p in held_out], model.config.text_length)
        with torch.no_grad():
            tf = model.text_features(ids.to(extractor.device), mask.to(extractor.device)).float().cpu().numpy()
        sims = cosine_matrix(tf, raw_held)
        texts = [metadata_text(p.meta) for p in held_out]
        hit1, hit5 = [], []
        for i in range(len(held_out)):
            order = np.argsort(-sims[i])
            ok = [texts[j] == texts[i] for j in order]  # an identical text is an equally right answer
            hit1.append(ok[0])
            hit5.append(any(ok[:5]))
        out["retrieval/text_to_music_top1"] = float(np.mean(hit1))
        out["retrieval/text_to_music_top5"] = float(np.mean(hit5))
    return out


def format_report(report: dict[str, float]) -> str:
    lines = []
    if "composer/accuracy" in report:
        lines.append(
            f"composer by nearest centroid: {report['composer/accuracy']:.1%} on "
            f"{int(report['composer/held_out_pieces'])} held-out pieces, {int(report['composer/classes'])} "
            f"composers (chance {report['composer/chance']:.1%}, majority class "
            f"{report['composer/majority']:.1%}); {report['composer/accuracy'] / report['composer/chance']:.1f}× chance"
        )
    if "prompt/margin" in report:
        lines.append(
            f"own-prompt centroid {report['prompt/own_score']:.3f} vs other prompts "
            f"{report['prompt/other_score']:.3f}: mean margin {report['prompt/margin']:+.3f} "
            f"(own prompt best for {report['prompt/own_is_best']:.1%})"
        )
        space = " (centred features)" if report.get("score/centred") else ""
        lines.append(
            f"real pieces{space} {report['corrupt/real_score']:.4f} vs bars shuffled across voices "
            f"{report['corrupt/shuffled_bars_score']:.4f} (real higher for "
            f"{report['corrupt/real_beats_shuffled_bars']:.1%}) vs random notes "
            f"{report['corrupt/random_notes_score']:.4f} (real higher for "
            f"{report['corrupt/real_beats_random_notes']:.1%})"
        )
    if "retrieval/text_to_music_top1" in report:
        lines.append(
            f"text→music retrieval: top-1 {report['retrieval/text_to_music_top1']:.1%}, "
            f"top-5 {report['retrieval/text_to_music_top5']:.1%}"
        )
    return "\n".join(lines)
