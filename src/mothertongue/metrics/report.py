"""The scorecard as a terminal table, Markdown and a self-contained HTML page with plots.

    from mothertongue.metrics.report import format_table
    print(format_table(json.load(open("runs/quickstart/evaluate/scorecard.json"))))

The HTML page embeds its matplotlib plots as base64 PNG (fidelity per set, reply lengths, metric
bars), the table, the judge's verdicts and the replies side by side, so it can be mailed or opened
offline with nothing next to it.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from mothertongue.metrics.english import verdict_line
from mothertongue.runs import atomic_write_text

# (key, label, format); metrics not listed here (e.g. lm-eval tasks) are shown after these.
ROWS = [
    ("fidelity", "in expected language", "{:.1%}"),
    ("sentence_fidelity", "sentences in language", "{:.1%}"),
    ("too_short", "too short to judge", "{:d}"),
    ("line_pass_rate", "LCB-style line pass rate", "{:.1%}"),
    ("line_accuracy", "LCB-style line accuracy", "{:.1%}"),
    ("word_pass_rate", "LCB-style word pass rate", "{:.1%}"),
    ("exact_match", "exact match", "{:.1%}"),
    ("chrf", "chrF", "{:.1f}"),
    ("bleu", "BLEU", "{:.1f}"),
    ("perplexity", "perplexity", "{:.1f}"),
    ("bits_per_byte", "bits per byte", "{:.3f}"),
    ("ended_at_eot", "ended at end of turn", "{:.1%}"),
    ("mean_reply_tokens", "mean reply tokens", "{:.1f}"),
    ("repetition", "repetition (3-grams)", "{:.1%}"),
]
HIDDEN = {"n", "judged", "line_judgeable", "reply_langs", "mean_reply_words", "repetitive", "empty"}


def _fmt(v, fmt: str) -> str:
    if v is None:
        return "–"
    try:
        return fmt.format(v)
    except (ValueError, TypeError):
        return str(v)


def table_rows(card: dict) -> tuple[list[str], list[list[str]]]:
    models = [m for m in ("base", "tuned") if m in card["models"]]
    rows = []
    ref = card["models"][models[-1]]
    for s, metrics in ref.items():
        label_set = f"{s} ({metrics.get('n', '?')})"
        keys = [(k, lab, f) for k, lab, f in ROWS if k in metrics]
        keys += [(k, k, "{:.3f}") for k in metrics if k not in HIDDEN and k not in {r[0] for r in ROWS}]
        for k, lab, f in keys:
            rows.append([label_set, lab] + [_fmt(card["models"][m].get(s, {}).get(k), f) for m in models])
    return ["set", "metric", *models], rows


def format_table(card: dict) -> str:
    """A Markdown table (also readable in a terminal)."""
    head, rows = table_rows(card)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    out = [line(head), sep, *[line(r) for r in rows]]
    if card.get("judge"):
        out.append("\n" + judge_line(card["judge"]))
    if card.get("benchmarks_note"):
        out.append(f"\nbenchmarks: {card['benchmarks_note']}")
    if card.get("english_regression"):
        out.append("\n" + verdict_line(card["english_regression"]))
    return "\n".join(out)


def judge_line(j: dict) -> str:
    if "error" in j:
        return f"judge: {j['error']}"
    return (f"judge ({j['judge']}, {j['n']} prompts, asked both orders): tuned better {j['tuned']}, "
            f"base better {j['base']}, tie/inconsistent {j['tie']}, unparsable {j['invalid']}")


def write_markdown(card: dict, path: Path) -> None:
    text = (f"# Scorecard: {card.get('name', 'run')}\n\nTarget language `{card['language']}`, base model "
            f"`{card['base_model']}`, {card.get('preset', 'greedy')} decoding, at most "
            f"{card.get('max_new_tokens', '?')} new tokens; every reply is in `generations.jsonl`.\n\n"
            f"{format_table(card)}\n")
    atomic_write_text(path, text)


# ------------------------------------------------------------------------------ plots
def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plots(card: dict, gens: list[dict]) -> dict[str, str]:
    """Base64 PNGs: fidelity per set, reply lengths, metric bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in ("base", "tuned") if m in card["models"]]
    colors = {"base": "#9e9e9e", "tuned": "#1f77b4"}
    sets = [s for s in card["models"][models[-1]] if "fidelity" in card["models"][models[-1]][s]]
    out = {}

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key, title in zip(axes, ("fidelity", "sentence_fidelity"), ("replies in expected language", "sentences in expected language")):
        width = 0.8 / len(models)
        for k, m in enumerate(models):
            vals = [100 * (card["models"][m][s].get(key) or 0) for s in sets]
            ax.bar([i + k * width for i in range(len(sets))], vals, width, label=m, color=colors[m])
        ax.set_xticks([i + width * (len(models) - 1) / 2 for i in range(len(sets))], sets, rotation=20, ha="right")
        ax.set_ylim(0, 105)
        ax.set_ylabel("%")
        ax.set_title(title)
        ax.legend()
    out["fidelity"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(11, 3.5))
    for m in models:
        lens = [g["tokens"] for g in gens if g["model"] == m]
        ax.hist(lens, bins=30, alpha=0.6, label=f"{m} ({sum(g['ended'] for g in gens if g['model'] == m)}/{len(lens)} ended at end of turn)", color=colors[m])
    ax.axvline(card.get("max_new_tokens", 0), color="#d62728", linestyle="--", label="max_new_tokens (cut off)")
    ax.set_xlabel("reply length (tokens)")
    ax.set_ylabel("replies")
    ax.set_title("reply lengths, all sets")
    ax.legend()
    out["lengths"] = _png(fig)
    plt.close(fig)

    bars = [("chrf", "chrF", 1), ("exact_match", "exact match %", 100), ("ended_at_eot", "ended at EOT %", 100), ("repetition", "repetition %", 100)]
    all_sets = list(card["models"][models[-1]])
    present = [(k, lab, mul) for k, lab, mul in bars if any(k in card["models"][models[-1]][s] for s in all_sets)]
    fig, axes = plt.subplots(1, len(present), figsize=(3.2 * len(present), 3.6), squeeze=False)
    for ax, (key, label, mul) in zip(axes[0], present):
        ss = [s for s in all_sets if key in card["models"][models[-1]][s]]
        width = 0.8 / len(models)
        for k, m in enumerate(models):
            vals = [mul * (card["models"][m].get(s, {}).get(key) or 0) for s in ss]
            ax.bar([i + k * width for i in range(len(ss))], vals, width, label=m, color=colors[m])
        ax.set_xticks([i + width * (len(models) - 1) / 2 for i in range(len(ss))], ss, rotation=30, ha="right", fontsize=8)
        ax.set_title(label)
    axes[0][0].legend()
    out["metrics"] = _png(fig)
    plt.close(fig)
    return out


CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1150px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px}
td.n{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%;display:block;margin:1em 0}
.g td{vertical-align:top;white-space:pre-wrap;overflow-wrap:anywhere;font-size:13px;max-width:360px}.bad{background:#fde8e8}p.bad{color:#b00020}"""


def write_html(card: dict, gens: list[dict], path: Path, max_rows: int = 300) -> None:
    esc = html.escape
    head, rows = table_rows(card)
    t = "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"
    for r in rows:
        t += "<tr>" + "".join(f"<td{' class=n' if i >= 2 else ''}>{esc(c)}</td>" for i, c in enumerate(r)) + "</tr>"
    t += "</table>"
    imgs = "".join(f'<h2>{esc(title)}</h2><img alt="{k}" src="data:image/png;base64,{b64}">'
                   for k, b64, title in ((k, v, {"fidelity": "Language fidelity", "lengths": "Reply lengths", "metrics": "Metrics"}[k])
                                         for k, v in plots(card, gens).items()))
    extra = ""
    if card.get("judge"):
        extra += f"<p>{esc(judge_line(card['judge']))}</p>"
    if card.get("benchmarks_note"):
        extra += f"<p>benchmarks: {esc(card['benchmarks_note'])}</p>"
    if card.get("english_regression"):
        gate = card["english_regression"]
        colour = " class='bad'" if gate["flagged"] else ""
        extra += f"<p{colour}><b>{esc(verdict_line(gate))}</b></p>"
    models = [m for m in ("base", "tuned") if m in card["models"]]
    by_key = {(g["model"], g["set"], g["id"]): g for g in gens}
    firsts = [g for g in gens if g["model"] == models[-1]][:max_rows]
    g_rows = ""
    for g in firsts:
        cells = ""
        for m in models:
            o = by_key.get((m, g["set"], g["id"]), {})
            bad = o.get("reply_lang") not in (None, o.get("expected_lang")) or not o.get("ended", True)
            cells += f"<td{' class=bad' if bad else ''}>{esc(o.get('reply', ''))}<br><small>[{esc(str(o.get('reply_lang')))}, {o.get('tokens')} tok{'' if o.get('ended') else ', cut off'}]</small></td>"
        g_rows += f"<tr><td>{esc(g['set'])}<br><small>{esc(g['id'])}</small></td><td>{esc(g['prompt'])}</td><td>{esc(g.get('reference') or '')}</td>{cells}</tr>"
    gt = ("<table class=g><tr><th>set</th><th>prompt</th><th>reference</th>" + "".join(f"<th>{m}</th>" for m in models)
          + f"</tr>{g_rows}</table>")
    doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Scorecard: {esc(card.get('name', 'run'))}</title>"
           f"<style>{CSS}</style></head><body><h1>Scorecard: {esc(card.get('name', 'run'))}</h1>"
           f"<p>Target language <b>{esc(card['language'])}</b>, base model <code>{esc(card['base_model'])}</code>, "
           f"{esc(card.get('preset', 'greedy'))} decoding, at most {card.get('max_new_tokens')} new tokens.</p>{t}{extra}{imgs}"
           f"<h2>Replies (first {len(firsts)}; all in generations.jsonl; red: wrong language or cut off)</h2>{gt}</body></html>")
    atomic_write_text(path, doc)
