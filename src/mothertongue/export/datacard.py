"""The dataset card (`README.md` with a YAML header) that `export-data` writes beside the data.

    python -c "from mothertongue.export.datacard import card; help(card)"

The YAML header names the languages, the license(s) and, per config, the Parquet file of each
split (so `datasets.load_dataset(FOLDER)` finds them). The body says where the data came from
(sources and their licenses from the recipe's `ingest.sources[].license`), how it was translated
(language pairs, models per route, engine and decoding settings, quality-gate settings) and what
the stage counted (segments translated, retried, flagged; conversations flagged and kept out).
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from mothertongue.config import Recipe
from mothertongue.conversation import SPLITS

# Option values that may hold a secret are not written (api_key_env only names a variable).
SECRET = re.compile(r"(key|token|secret|password)", re.I)
MAX_FLAGGED_LISTED = 50


def parquet_path(folder: str, split: str) -> str:
    return f"{folder}/{split}-00000-of-00001.parquet"


def _configs(counts: dict) -> list[dict]:
    configs = []
    for name, folder, per in (
        ("default", "data", counts["conversations"]),
        ("preference", "preference", counts["preference"]),
        ("built", "built", counts["built"]),
    ):
        if per:
            files = [{"split": s, "path": parquet_path(folder, s)} for s in SPLITS if per.get(s)]
            configs.append({"config_name": name, "data_files": files})
    if counts.get("documents"):
        configs.append(
            {
                "config_name": "documents",
                "data_files": [{"split": "train", "path": parquet_path("documents", "train")}],
            }
        )
    if counts["text"]:
        configs.append(
            {
                "config_name": "text",
                "data_files": [{"split": "train", "path": parquet_path("text", "train")}],
            }
        )
    return configs


def _safe(options: dict[str, Any]) -> dict[str, Any]:
    """Engine options as they may be published: secrets out, credentials out of URLs."""
    out = {}
    for k, v in options.items():
        if SECRET.search(k) and k != "api_key_env":
            out[k] = "<not shown>"
        elif isinstance(v, str):
            out[k] = re.sub(r"//[^/@\s]+@", "//", v)
        elif isinstance(v, dict):
            out[k] = _safe(v)
        else:
            out[k] = v
    return out


def header(recipe: Recipe, counts: dict, languages: list[str]) -> str:
    licenses = sorted({s.license for s in recipe.ingest.sources if s.license})
    meta: dict[str, Any] = {
        "language": languages,
        "license": licenses[0] if len(licenses) == 1 else "other",
        "task_categories": ["text-generation"],
        "tags": ["mothertongue", "machine-translated", "instruction-tuning"],
        "pretty_name": f"{recipe.name} ({recipe.language})",
        "configs": _configs(counts),
    }
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def card(recipe: Recipe, counts: dict, reports: dict[str, dict | None]) -> str:
    """The card's text; `reports`: the ingest, translate and build stages' report.json (or None)."""
    ingest, tr, build = reports.get("ingest") or {}, reports.get("translate"), reports.get("build")
    pairs = list((tr or {}).get("messages_by_pair", {}))
    languages = sorted({recipe.language, *(p.split("->")[0] for p in pairs)})
    lines = [
        header(recipe, counts, languages),
        f"# {recipe.name}: chat data in `{recipe.language}`",
        "",
    ]
    lines.append(
        ("Machine-translated" if tr else "Ingested (not translated)")
        + f" by mothertongue from the run `{recipe.name}`; "
        f"made from the `{counts['stage']}` stage's output. Check machine-translated text before "
        "you rely on it: `source_messages` holds the originals."
    )
    lines += [
        "",
        "## Sources",
        "",
        "| source | format | license | read | converted | skipped |",
        "|---|---|---|---:|---:|---:|",
    ]
    per = {s.get("path"): s for s in ingest.get("sources", [])}
    for i, s in enumerate(recipe.ingest.sources):
        got = (
            per.get(str(recipe.resolve_path(s.path)))
            or (ingest.get("sources") or [{}] * (i + 1))[i]
        )
        lines.append(
            f"| `{s.name or s.path}` | {s.format} | {s.license or 'not stated in the recipe: check the source'} "
            f"| {got.get('read', '')} | {got.get('converted', '')} | {got.get('skipped', '')} |"
        )
    lines += [
        "",
        "## Splits",
        "",
        "| config | " + " | ".join(SPLITS) + " |",
        "|---|" + "---:|" * len(SPLITS),
    ]
    for name, key in (("default (conversations)", "conversations"), ("preference (TRL)", "preference"),
                      ("built (training mix)", "built")):  # fmt: skip
        if counts[key]:
            lines.append(
                f"| {name} | " + " | ".join(str(counts[key].get(s, 0)) for s in SPLITS) + " |"
            )
    if counts.get("documents"):
        lines.append(f"| documents (translated) | {counts['documents']} | 0 | 0 |")
    if counts["text"]:
        lines.append(f"| text (native, for continued pretraining) | {counts['text']} | 0 | 0 |")
    if tr:
        lines += translation_section(recipe, tr)
    if build:
        lines += ["", "## Build", "", f"- chat template `{build.get('template')}`; {build.get('train_examples')} "
                  f"training examples, {build.get('dev_examples')} dev; {build.get('tokens')} tokens"]  # fmt: skip
        for part, v in (build.get("mix", {}).get("realised") or {}).items():
            lines.append(f"- mix part `{part}`: {v.get('examples')} examples")
    lines += ["", "## Files", "",
              "- `data/`: Parquet per split (`datasets.load_dataset(FOLDER)`)",
              "- `messages/`: OpenAI messages JSONL (Axolotl `type: chat_template`)",
              "- `sharegpt/` + `dataset_info.json`: ShareGPT JSONL (LLaMA-Factory `dataset_dir`)"]  # fmt: skip
    if counts["preference"]:
        lines.append("- `preference/`: TRL conversational preference pairs (DPO, ORPO)")
    return "\n".join(lines) + "\n"


def translation_section(recipe: Recipe, tr: dict) -> list[str]:
    t = recipe.translate
    seg = tr.get("segments", {})
    lines = [
        "",
        "## Translation",
        "",
        "| language pair | messages | route (model per leg) |",
        "|---|---:|---|",
    ]
    routes = tr.get("routes", {})
    for pair, n in tr.get("messages_by_pair", {}).items():
        lines.append(f"| {pair} | {n} | {'; '.join(routes.get(pair, []))} |")
    options = _safe(t.options)
    flagged = tr.get("flagged", [])  # the first ones; flagged_count counts them all
    n_flagged = tr.get("flagged_count", len(flagged))
    lines += [
        "",
        f"- MT models: {', '.join(sorted({leg.split(': ', 1)[1] for legs in routes.values() for leg in legs if ': ' in leg}))}",
        f"- engine `{tr.get('engine', t.engine)}`, beam size {t.beam_size}, batch_tokens {t.batch_tokens}, "
        f"max_segment_tokens {t.max_segment_tokens}"
        + (f", options `{json.dumps(options, ensure_ascii=False)}`" if options else ""),
        f"- passed through (already `{recipe.language}`): {tr.get('passthrough_messages', 0)} messages; "
        f"pivoted: {tr.get('pivoted_messages', 0)}; language guessed: {tr.get('language_guessed_messages', 0)}",
        f"- segments: {seg.get('segments', 0)} distinct, {seg.get('translated', 0)} translated in the last run, "
        f"{seg.get('from_memory', 0)} from the translation memory",
        "",
        "### Quality gate",
        "",
        f"- {'on' if t.quality_gate else 'off'}: length ratio {t.min_length_ratio}..{t.max_length_ratio}, "
        f"repeated n-grams, target language; a failed segment retried once with beam {t.retry_beam_size}",
        f"- segments retried: {seg.get('retried', 0)}; flagged: {seg.get('flagged', 0)}",
        f"- records flagged: {n_flagged} ("
        + ("kept in this dataset" if tr.get("flagged_kept") else "kept out of this dataset")
        + ")",
    ]
    rt, qe = seg.get("round_trip"), seg.get("quality_estimation")
    if rt:
        lines.append(f"- round trip (back-translated, chrF against the source): {rt['scored']} segments scored, "
                     f"mean {rt['mean_chrf']}, {rt['flagged']} flagged under {rt['min_chrf']}")
    if qe:
        judge = f"`{t.quality_estimation.model}`"
        lines.append(f"- quality estimation (LLM judge {judge}, 0-100): {qe['scored']} segments scored, mean "
                     f"{qe['mean_score']}, {qe['flagged']} flagged under {qe['min_score']}, {qe['unparsed']} unparsed")
    for f in flagged[:MAX_FLAGGED_LISTED]:
        where = f"{f.get('split')}/" if f.get("split") else ""
        lines.append(
            f"  - {f.get('kind')} {where}`{f.get('id')}`: {'; '.join(f.get('reasons', []))}"
        )
    if n_flagged > min(len(flagged), MAX_FLAGGED_LISTED):
        lines.append(
            f"  - ... and {n_flagged - min(len(flagged), MAX_FLAGGED_LISTED)} more (translate/flagged.jsonl in the run)"
        )
    return lines
