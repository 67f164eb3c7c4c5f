"""``clampdpo report``: one self-contained HTML page to see and hear a campaign (or compare several).

Per campaign: the summary and round tables (intervals where recorded), curves across rounds, the reward
against the independent judge per round (the Goodhart check at a glance), score histograms against the real
pieces, the evaluator's headroom, and for each prompt and round the best, median and worst samples engraved
as sheet music with a player beside each, and a few chosen / rejected pairs side by side. With several
campaigns: their curves overlaid and the config sections in which they differ. Everything is inside the file
(SVG, WAV as data URIs, inline style and script): it opens with the network off.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import logging
import math
import re
import time
from pathlib import Path
from typing import Any

from base import atomic
from evaluators.meter import fill_share
from pipelines.campaign import charts
from pipelines.campaign.compare import last_round_details, load_rounds
from pipelines.campaign.identity import changed_sections, read_state
from pipelines.campaign.layout import SAMPLES_FILE, SCORES_FILE, Layout, stage_name
from pipelines.campaign.metrics import GROUPS, format_table, summary
from pipelines.campaign.state import Markers

log = logging.getLogger(__name__)

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
h3{font-size:15px;margin:18px 0 6px}pre{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:11px}
pre.wrap{white-space:pre-wrap}
.charts{display:flex;flex-wrap:wrap;gap:12px}.piece{border:1px solid #ddd;border-radius:6px;padding:8px;
margin:6px 0}.piece .head{font-size:12px;color:#444;margin-bottom:4px}.score svg{width:100%;height:auto;
max-height:420px}.pair{display:grid;grid-template-columns:1fr 1fr;gap:10px}.placeholder{background:#fff4f4;
border:1px dashed #d66;padding:10px;font-size:12px;color:#900}table.cfg td,table.cfg th{border:1px solid #ddd;
padding:3px 6px;font-size:12px;vertical-align:top}details summary{cursor:pointer}
table.numbers{border-collapse:collapse}table.numbers td,table.numbers th{border:1px solid #ddd;padding:3px 8px;
font-size:12px;text-align:right}
.sound,.files{font-size:11px;color:#555;margin-top:2px}
"""
# Marks each player once its sound is loaded (a test reads the marks): the page needs nothing from the web.
SCRIPT = """
document.querySelectorAll('audio').forEach(function(a){
  a.addEventListener('loadedmetadata',function(){a.dataset.duration=String(a.duration);});
  a.load();
});
"""
PIECES = (("best", 0), ("median", None), ("worst", -1))


def _esc(text: object) -> str:
    return html.escape(str(text))


class Renders:
    """Engravings and sounds of pieces, cached on disk by content (a report is rebuilt after every round)."""

    def __init__(self, cache: Path | None):
        self.cache = cache

    def __call__(self, interleaved: str | None, prompt: str = "") -> dict[str, Any]:
        from pipelines.campaign.render import RENDER_VERSION, render
        from pipelines.campaign.sound import programs, soundfont

        sound = f"{soundfont()}:{programs(prompt, 8)}"  # the instruments and the SoundFont change the sound
        key = hashlib.sha256(f"{RENDER_VERSION}\n{sound}\n{interleaved or ''}".encode()).hexdigest()[:24]
        f = self.cache / f"{key}.json" if self.cache else None
        if f is not None and f.is_file():
            try:
                return json.loads(f.read_text())
            except ValueError:
                pass  # a damaged entry is rendered again
        r = render(interleaved, prompt)
        b64 = lambda b: base64.b64encode(b).decode() if b else None  # noqa: E731
        out = {
            "svg": r.svg,
            "wav": b64(r.wav),
            "error": r.error,
            "mime": r.mime,
            "sound": r.sound,
            "musicxml": b64(r.musicxml),
            "midi": b64(r.midi),
        }
        if f is not None:
            atomic.write_json(f, out)
        return out


def _standard_abc(interleaved: str) -> str:
    """The piece as standard ABC (one block per voice), what ABC programs and music21 read; '' if it has none."""
    from base.abc.interleave import deinterleave

    try:
        return "X:1\n" + "".join(deinterleave(interleaved.splitlines(keepends=True))) if interleaved else ""
    except Exception:  # a sample whose voices cannot be told apart: no ABC to offer, the others still are
        return ""


def _downloads(row: dict, sample: dict, r: dict) -> str:
    """The piece as files to open elsewhere (MuseScore, a player): its ABC, MusicXML and MIDI."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", str(row.get("id") or sample.get("id") or "piece"))
    links = []
    abc = _standard_abc(sample.get("interleaved") or "")
    if abc:
        data = base64.b64encode(abc.encode()).decode()
        links.append(f'<a download="{stem}.abc" href="data:text/vnd.abc;base64,{data}">ABC</a>')
    if r.get("musicxml"):
        mime = "application/vnd.recordare.musicxml+xml"
        links.append(f'<a download="{stem}.musicxml" href="data:{mime};base64,{r["musicxml"]}">MusicXML</a>')
    if r.get("midi"):
        links.append(f'<a download="{stem}.mid" href="data:audio/midi;base64,{r["midi"]}">MIDI</a>')
    return f'<div class="files">download: {" · ".join(links)}</div>' if links else ""


def _piece_html(label: str, row: dict, sample: dict, renders: Renders) -> str:
    r = renders(sample.get("interleaved"), str(sample.get("prompt") or row.get("prompt") or ""))
    head = (
        f'<div class="head"><b>{_esc(label)}</b> · {_esc(row.get("id", ""))} · CLaMP '
        f"{row.get('clamp_score', math.nan):.3f} · judge {row.get('judge_score', math.nan):.3f} · "
        f"{'valid' if row.get('valid') else 'not valid'} · meter fill "
        f"{fill_share([row]):.2f}</div>"
    )
    if r["svg"]:
        body = f'<div class="score">{r["svg"]}</div>'
    else:
        body = f'<div class="placeholder">no engraving: {_esc(r["error"])}</div>'
    if r["wav"]:
        mime = r.get("mime", "audio/wav")
        body += f'<audio controls preload="auto" src="data:{mime};base64,{r["wav"]}"></audio>'
        body += f'<div class="sound">sound: {_esc(r.get("sound") or "simple synthesis")}</div>'
    elif r["svg"]:
        body += f'<div class="placeholder">no sound: {_esc(r["error"])}</div>'
    body += _downloads(row, sample, r)
    return f'<div class="piece">{head}{body}</div>'


def _unscored_html(prompt: str, rows: list[dict], samples: dict[str, dict], shown: int = 3) -> str:
    """A prompt none of whose samples could be scored (a policy that writes nothing readable): what the first
    few samples say and why each failed, since that is what a user needs to see then."""
    items = []
    for row in rows[:shown]:
        text = (samples.get(row["id"], {}).get("text") or samples.get(row["id"], {}).get("interleaved") or "")[:1500]
        why = row.get("invalid_reason") or samples.get(row["id"], {}).get("error") or "no score"
        items.append(
            f'<div class="piece unscored"><div class="head"><b>{_esc(row["id"])}</b> · not valid: {_esc(why)}</div>'
            f"<pre>{_esc(text) or '(empty)'}</pre></div>"
        )
    return (
        f"<h4>{_esc(prompt)}</h4><p>no valid sample ({len(rows)} sampled): the first {min(shown, len(rows))} "
        f"as written, with why each failed</p>" + "".join(items)
    )


def _rounds_of(root: Path) -> list[int]:
    return Layout(root).evaluated_rounds()


def _series(rows: list[dict], key: str, name: str) -> dict:
    ys = [r.get(f"{key}/mean", r.get(key, math.nan)) for r in rows]
    out = {"name": name, "x": [r["round"] for r in rows], "y": ys}
    if all(f"{key}/ci_low" in r for r in rows):
        out["low"] = [r[f"{key}/ci_low"] for r in rows]
        out["high"] = [r[f"{key}/ci_high"] for r in rows]
    return out


def _curves(campaigns: dict[str, list[dict]]) -> str:
    charts_html = []
    for key, title, real in (
        ("clamp", "CLaMP score", "real/clamp"),
        ("judge", "judge score", "real/judge"),
        ("meter_fill", "bars filling the meter", "real/meter_fill"),
        ("validity", "validity", "real/validity"),
        ("diversity", "diversity (pairwise cosine)", "real/diversity"),
        ("auc_real_vs_samples", "headroom: AUC real vs samples", None),
        ("js/meter", "metre mix vs real pieces (JS)", None),
        ("bars", "length (bars per piece)", "real/bars"),
        ("music/similarity", "music statistics: similarity to real", "real/music/similarity"),
        ("fidelity", "fidelity: own prompt by statistics", "real/fidelity"),
        ("two_sample_auc", "two-sample AUC vs real (0.5 = alike)", "real/two_sample_auc"),
    ):
        for group, gname in GROUPS.items():
            series = [
                _series(rows, f"{group}/{key}", name if len(campaigns) > 1 else gname)
                for name, rows in campaigns.items()
                if rows and f"{group}/clamp/mean" in rows[0]
            ]
            # a campaign made before a metric existed has none of it: no line rather than an empty chart
            series = [x for x in series if any(isinstance(y, float) and math.isfinite(y) for y in x["y"])]
            if not series:
                continue
            refs = {}
            level = [rows[0][f"{group}/{real}"] for rows in campaigns.values() if rows and f"{group}/{real}" in rows[0]]
            if real and level:  # the first campaign that has it (the real pieces are the same corpus's)
                refs["real"] = level[0]
            charts_html.append(charts.lines(f"{title} · {gname}", series, references=refs))
    return '<div class="charts">' + "".join(charts_html) + "</div>"


TRAINING_COLUMNS = [
    ("pairs", "pairs/count"),
    ("DPO margin", "rewards/margins"),
    ("DPO accuracy", "rewards/accuracies"),
    ("DPOP penalty", "dpop/penalty"),
    ("FMD train", "train/frechet"),
    ("FMD held-out", "heldout/frechet"),
    ("JS pitch train", "train/js/pitch_class"),
    ("JS duration train", "train/js/duration"),
]


def _training_table(rows: list[dict]) -> str:
    """What the table of the terminal leaves out: DPO's own numbers and the distances to the real pieces."""

    def cell(key: str, v: object) -> str:
        if isinstance(v, (int, float)) and math.isfinite(v):
            return f"{v:.0f}" if key.endswith("/count") else f"{v:.3f}"
        return "-"

    head = "".join(f"<th>{_esc(name)}</th>" for name, _ in TRAINING_COLUMNS)
    body = "".join(
        f"<tr><td>{int(r['round'])}</td>"
        + "".join(f"<td>{cell(key, r.get(key))}</td>" for _, key in TRAINING_COLUMNS)
        + "</tr>"
        for r in rows
    )
    title = "<h3>DPO and distances to the real pieces</h3>"
    return f'{title}<table class="numbers"><tr><th>round</th>{head}</tr>{body}</table>'


MUSIC_COLUMNS = [
    ("similarity", "music/similarity", "real/music/similarity"),
    ("fidelity", "fidelity/mean", "real/fidelity"),
    ("fidelity Δ r0", "fidelity_gain/mean", None),
    ("2s-AUC", "two_sample_auc", "real/two_sample_auc"),
]
PAIR_COLUMNS = [
    ("direction", "direction"),
    ("chosen sim.", "similarity/chosen"),
    ("candidates sim.", "similarity/candidates"),
    ("JS M chosen", "js_meter/chosen"),
    ("JS M candidates", "js_meter/candidates"),
    ("bars chosen", "bars/chosen"),
    ("bars real", "bars/real"),
]


def _fmt(v: object, signed: bool = False) -> str:
    if isinstance(v, (int, float)) and math.isfinite(v):
        return f"{v:+.3f}" if signed else f"{v:.3f}"
    return "-"


def _music_tables(root: Path, rows: list[dict]) -> str:
    """Per prompt and round: the music statistics' similarity to the real pieces, fidelity and the
    two-sample AUC (real pieces' level in brackets), and each round's pair checks before DPO."""
    lay = Layout(root)
    head = "".join(f"<th>{_esc(n)}</th>" for n, _, _ in MUSIC_COLUMNS)
    body = []
    for r in rows:
        k = int(r["round"])
        try:
            per = json.loads(lay.metrics(k).read_text(encoding="utf-8")).get("per_prompt_music") or {}
        except (OSError, ValueError):
            per = {}
        for prompt, v in sorted(per.items()):
            cells = []
            for _, key, real in MUSIC_COLUMNS:
                cell = _fmt(v.get(key), key.endswith("gain/mean"))
                if real and isinstance(v.get(real), float) and math.isfinite(v[real]):
                    cell += f" ({v[real]:.3f})"
                cells.append(f"<td>{_esc(cell)}</td>")
            body.append(f"<tr><td>{k}</td><td style='text-align:left'>{_esc(prompt)}</td>{''.join(cells)}</tr>")
    out = ""
    if body:
        out += (
            "<h3>music statistics per prompt (no network; the real held-out pieces' level in brackets)</h3>"
            f'<table class="numbers"><tr><th>round</th><th>prompt</th>{head}</tr>{"".join(body)}</table>'
        )
    checks = []
    for r in rows:
        k = int(r["round"])
        marker = Markers(root).done(stage_name(k, "pairs")) or {}
        for prompt, c in sorted((marker.get("pair_checks") or {}).items()):
            row_cells = "".join(f"<td>{_esc(_fmt(c.get(key), key == 'direction'))}</td>" for _, key in PAIR_COLUMNS)
            dropped = " (dropped)" if prompt in (marker.get("dropped_prompts") or []) else ""
            checks.append(f"<tr><td>{k}</td><td style='text-align:left'>{_esc(prompt + dropped)}</td>{row_cells}</tr>")
    if checks:
        head2 = "".join(f"<th>{_esc(n)}</th>" for n, _ in PAIR_COLUMNS)
        out += (
            "<h3>the pairs before DPO: do they point toward the real music?</h3><p>direction: cosine of chosen − "
            "rejected with real − candidates on the standardised music statistics (+1 toward the real pieces)</p>"
            f'<table class="numbers"><tr><th>round</th><th>prompt</th>{head2}</tr>{"".join(checks)}</table>'
        )
    return out


def _campaign_html(root: Path, renders: Renders, pairs_per_round: int) -> str:
    lay = Layout(root)
    state = read_state(root)
    rows = load_rounds(root)
    parts = [
        f"<h2>campaign {_esc(root.name)}</h2>",
        f"<p>config {_esc(state.get('config_name') or '?')} · folder {_esc(root)}</p>",
    ]
    text = summary(rows, last_round_details(root))
    if text:
        parts.append(f'<h3>round 0 → {int(rows[-1]["round"])}</h3><pre class="wrap">{_esc(text)}</pre>')
    if rows:
        parts.append(f"<h3>round table</h3><pre>{_esc(format_table(rows))}</pre>")
        parts.append(_training_table(rows))
        parts.append(_music_tables(root, rows))
        parts.append("<h3>curves across rounds (bands: 95% intervals; dashed: the real pieces)</h3>")
        parts.append(_curves({root.name: rows}))
    real = atomic.read_jsonl(lay.real / SCORES_FILE)
    evaluator = (Markers(root).done("evaluator") or {}).get("dir")
    report = Path(evaluator) / "report.json" if evaluator else root / "evaluator" / "report.json"
    if report.is_file():
        rep = json.loads(report.read_text())
        keys = [k for k in rep if k.startswith(("composer/", "prompt/", "corrupt/"))]
        parts.append(
            "<h3>the evaluator's held-out checks</h3><pre>"
            + _esc("\n".join(f"{k}: {rep[k]:.4f}" for k in keys))
            + "</pre>"
        )
    scatters, hists, pieces, pairs = [], [], [], []
    for k in _rounds_of(root):
        scores = atomic.read_jsonl(lay.eval_scores(k) / SCORES_FILE)
        samples = {s["id"]: s for s in atomic.read_jsonl(lay.eval_samples(k) / SAMPLES_FILE)}
        scatters.append(
            charts.scatter(
                f"round {k}: reward vs judge",
                [(s["clamp_score"], s["judge_score"]) for s in scores],
                "CLaMP score",
                "judge",
            )
        )
        hists.append(
            charts.histogram(
                f"round {k}: CLaMP scores",
                {"samples": [s["clamp_score"] for s in scores], "real pieces": [r["clamp_score"] for r in real]},
            )
        )
        by_prompt: dict[str, list[dict]] = {}
        for s in scores:
            if not math.isnan(s["clamp_score"]):
                by_prompt.setdefault(s["prompt"], []).append(s)
        block = [f"<h3>round {k}</h3>"]
        for prompt in sorted({s["prompt"] for s in scores} - set(by_prompt)):
            block.append(_unscored_html(prompt, [s for s in scores if s["prompt"] == prompt], samples))
        for prompt, group in sorted(by_prompt.items()):
            group.sort(key=lambda s: -s["clamp_score"])
            block.append(f"<h4>{_esc(prompt)}</h4>")
            for label, index in PIECES:
                row = group[index if index is not None else len(group) // 2]
                block.append(_piece_html(label, row, samples.get(row["id"], {}), renders))
        pieces.append("".join(block))
        if k > 0 and lay.pairs(k).is_file():
            cands = {s["id"]: s for s in atomic.read_jsonl(lay.samples(k) / SAMPLES_FILE)}
            cscores = {s["id"]: s for s in atomic.read_jsonl(lay.scores(k) / SCORES_FILE)}
            lines = lay.pairs(k).read_text(encoding="utf-8").splitlines()[1 : 1 + pairs_per_round]
            for line in lines:
                p = json.loads(line)
                sides = [
                    _piece_html(
                        f"{side} ({p['prompt']})",
                        cscores.get(p[f"{side}_id"], {}),
                        cands.get(p[f"{side}_id"], {}),
                        renders,
                    )
                    for side in ("chosen", "rejected")
                ]
                pairs.append(f'<h4>round {k}</h4><div class="pair">{"".join(sides)}</div>')
    parts.append(
        "<h3>reward against the independent judge (the Goodhart check)</h3>"
        f'<div class="charts">{"".join(scatters)}</div>'
    )
    parts.append(f'<h3>score histograms</h3><div class="charts">{"".join(hists)}</div>')
    parts.append(
        "<h3>samples: best, median and worst of each prompt, every round (same seeds each round)</h3>" + "".join(pieces)
    )
    if pairs:
        parts.append("<h3>chosen and rejected pairs</h3>" + "".join(pairs))
    return "".join(parts)


def _config_diff(roots: list[Path]) -> str:
    states = {r.name: read_state(r)["config"] for r in roots}
    names = list(states)
    sections = sorted({s for a in names for b in names if a < b for s in changed_sections(states[a], states[b])})
    if not sections:
        return "<p>the campaigns share one config (where they run aside)</p>"
    rows = []
    for section in sections:
        fields = sorted({f for n in names for f in states[n].get(section, {})})
        for f in fields:
            values = [json.dumps(states[n].get(section, {}).get(f)) for n in names]
            if len(set(values)) > 1:
                rows.append(
                    f"<tr><td>{_esc(section)}.{_esc(f)}</td>" + "".join(f"<td>{_esc(v)}</td>" for v in values) + "</tr>"
                )
    head = "<tr><th>field</th>" + "".join(f"<th>{_esc(n)}</th>" for n in names) + "</tr>"
    return f'<table class="cfg">{head}{"".join(rows)}</table>'


def build_report(dirs: list[str | Path], out: str | Path | None = None, pairs_per_round: int = 2) -> Path:
    """Write the report of one or more campaign folders (default: ``report.html`` in the first one)."""
    start = time.perf_counter()
    roots = [Path(d).resolve() for d in dirs]
    for r in roots:
        read_state(r)  # a clear error for a folder that is not a campaign
    out_path = Path(out) if out else roots[0] / "report.html"
    renders = Renders(roots[0] / "report-renders")
    body = []
    if len(roots) > 1:
        campaigns = {r.name: load_rounds(r) for r in roots}
        body.append(
            "<h2>the campaigns compared</h2>" + _curves(campaigns) + "<h3>config differences</h3>" + _config_diff(roots)
        )
    body += [_campaign_html(r, renders, pairs_per_round) for r in roots]
    title = "clampdpo report: " + ", ".join(r.name for r in roots)
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{_esc(title)}</h1>"
        f"<p>built {time.strftime('%Y-%m-%d %H:%M:%S')}; every image and sound is inside this file</p>"
        f"{''.join(body)}<script>{SCRIPT}</script></body></html>"
    )
    atomic.write_text(out_path, page)
    log.info("report %s: %.1f MB in %.1f s", out_path, out_path.stat().st_size / 1e6, time.perf_counter() - start)
    return out_path
