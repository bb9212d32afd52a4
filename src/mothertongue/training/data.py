"""Training data for each method, read from the build stage's output with line-precise errors.

    mothertongue train recipes/quickstart.yaml            # reads build/train.jsonl, build/dev.jsonl
    mothertongue train RECIPE train.method=dpo           # reads build/preference.jsonl (+ preference_dev.jsonl)
    mothertongue train RECIPE train.method=cpt           # reads build/text.jsonl

sft:  `{"input_ids": [...], "labels": [...]}` rows, labels already -100 outside assistant turns.
dpo/orpo: `{"prompt": [{"role","content"}...], "chosen": str, "rejected": str}` rows.
cpt:  `{"text": str}` rows of native target-language text.
Every bad row raises DataError naming file, line and field; nothing is dropped silently.
"""

from __future__ import annotations

from pathlib import Path

from mothertongue.conversation import DataError, iter_jsonl

ROLES = {"system", "user", "assistant"}


def _int_list(path: Path, n: int, row: dict, field: str) -> list[int]:
    v = row.get(field)
    if not isinstance(v, list) or not all(isinstance(x, int) for x in v):
        raise DataError(f"{path}:{n}: field {field!r} must be a list of token ids")
    return v


def load_sft(path: Path):
    """Pre-tokenized chat examples as a Dataset (empty Dataset when the file is absent)."""
    from datasets import Dataset

    ids, labels = [], []
    if path.exists():
        for n, row in iter_jsonl(path):
            i, lab = _int_list(path, n, row, "input_ids"), _int_list(path, n, row, "labels")
            if len(i) != len(lab):
                raise DataError(f"{path}:{n}: field 'labels' has {len(lab)} entries, input_ids {len(i)}")
            ids.append(i)
            labels.append(lab)
    return Dataset.from_dict({"input_ids": ids, "labels": labels})


def load_preference(path: Path):
    """Preference pairs in TRL's conversational form: prompt messages, chosen/rejected as one
    assistant message each, so the trainer renders them with the run's chat template."""
    from datasets import Dataset

    if not path.exists():
        raise DataError(
            f"{path}: not found; dpo/orpo need preference pairs from the build stage "
            '(rows {"prompt": [messages], "chosen": str, "rejected": str})'
        )
    out: dict[str, list] = {"prompt": [], "chosen": [], "rejected": []}
    for n, row in iter_jsonl(path):
        prompt = row.get("prompt")
        if not isinstance(prompt, list) or not prompt:
            raise DataError(f"{path}:{n}: field 'prompt' must be a non-empty list of messages")
        for k, m in enumerate(prompt):
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise DataError(f"{path}:{n}: field 'prompt[{k}]' must be {{role: system|user|assistant, content: str}}")
        for field in ("chosen", "rejected"):
            if not isinstance(row.get(field), str) or not row[field].strip():
                raise DataError(f"{path}:{n}: field {field!r} must be a non-empty string")
        out["prompt"].append([{"role": m["role"], "content": m["content"]} for m in prompt])
        out["chosen"].append([{"role": "assistant", "content": row["chosen"]}])
        out["rejected"].append([{"role": "assistant", "content": row["rejected"]}])
    if not out["prompt"]:
        raise DataError(f"{path}: no preference pairs")
    return Dataset.from_dict(out)


def load_text(path: Path):
    """(Dataset, number of blank rows skipped): native text for continued pretraining."""
    from datasets import Dataset

    if not path.exists():
        raise DataError(f'{path}: not found; cpt needs native text from the build stage (rows {{"text": str}})')
    texts, blank = [], 0
    for n, row in iter_jsonl(path):
        t = row.get("text")
        if not isinstance(t, str):
            raise DataError(f"{path}:{n}: field 'text' must be a string")
        if t.strip():
            texts.append(t)
        else:
            blank += 1
    if not texts:
        raise DataError(f"{path}: no text to train on")
    return Dataset.from_dict({"text": texts}), blank
