"""lm-evaluation-harness benchmarks folded into the scorecard (only when `lm-eval` is installed).

    pip install lm-eval
    mothertongue evaluate runs/myrun evaluate.benchmarks=true evaluate.lm_eval_limit=200 --force

Runs `evaluate.lm_eval_tasks` (target language; default: for German the human-translated or native
sets mmmlu_de_de, global_mmlu_de, include_base_44_german, belebele_deu_Latn, xquad_de,
mgsm_native_cot_de; for other languages the multilingual tasks lm-eval has for it, of arc_XX,
hellaswag_XX, m_mmlu_XX, truthfulqa_XX_mc2, belebele_<FLORES code>, xnli_XX) and
`evaluate.lm_eval_english_tasks` (to show regression in English) on the in-memory model through
lm-eval's own `HFLM` wrapper and `simple_evaluate`. A model with a chat template is asked the way
it is used: through its template, few-shot examples as earlier turns (`apply_chat_template`,
`fewshot_as_multiturn`; `evaluate.lm_eval_chat: auto|on|off`). Task names a user gives are
checked against the installed lm-eval's task list first (one line naming the unknown task). Each
task contributes its main score (acc_norm, else acc, else the first numeric metric) to the sets
`lm-eval <lang>` and `lm-eval en` of the scorecard. The datasets come from the Hugging Face hub
(or its cache); without lm-eval the scorecard says so and goes on.
"""

from __future__ import annotations

import difflib
from functools import lru_cache

from mothertongue.errors import MothertongueError

# Human-translated or native sets, preferred over machine-translated ones where lm-eval has them.
HUMAN_TRANSLATED = {
    "de": ["mmmlu_de_de", "global_mmlu_de", "include_base_44_german", "belebele_deu_Latn", "xquad_de", "mgsm_native_cot_de"],
}

PREFERRED = ("acc_norm,none", "acc,none", "mc2,none", "exact_match,none", "f1,none")


def main_score(metrics: dict) -> tuple[str, float] | None:
    """The headline number of one lm-eval task result (its stderr entries are skipped)."""
    for key in PREFERRED:
        if isinstance(metrics.get(key), (int, float)):
            return key.split(",")[0], float(metrics[key])
    for key, v in metrics.items():
        if isinstance(v, (int, float)) and "stderr" not in key and key != "alias":
            return key.split(",")[0], float(v)
    return None


def fold_results(results: dict, tasks: list[str]) -> dict:
    out: dict = {"n": 0}
    for task in tasks:
        got = main_score(results.get(task, {}))
        if got is not None:
            out[f"{task} ({got[0]})"] = got[1]
            out["n"] += 1
    return out


def candidate_tasks(language: str) -> list[str]:
    """The multilingual lm-eval task names a language would have (not all exist for every one)."""
    from mothertongue.engines.catalogue import NLLB_CODES

    code = language.lower().split("-")[0]
    if code in HUMAN_TRANSLATED:
        return list(HUMAN_TRANSLATED[code])
    names = [f"arc_{code}", f"hellaswag_{code}", f"m_mmlu_{code}", f"truthfulqa_{code}_mc2"]
    if code in NLLB_CODES:
        names.append(f"belebele_{NLLB_CODES[code]}")
    return [*names, f"xnli_{code}"]


def default_tasks(language: str, known: set[str] | None = None) -> list[str]:
    """`candidate_tasks` that lm-eval knows (`known`: its task names; asked when not given)."""
    known = known_tasks() if known is None else known
    return [t for t in candidate_tasks(language) if t in known]


@lru_cache(maxsize=1)
def known_tasks() -> frozenset[str]:
    """Every task and group name the installed lm-eval knows (indexing takes a few seconds)."""
    from lm_eval.tasks import TaskManager

    return frozenset(TaskManager(verbosity="ERROR").all_tasks)


def check_tasks(tasks: list[str], field: str) -> None:
    """One line naming the first task the installed lm-eval does not know."""
    known = known_tasks()
    for task in tasks:
        if task not in known:
            close = difflib.get_close_matches(task, known, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else "; `lm-eval ls tasks` lists them"
            raise MothertongueError(f"{field}: lm-eval does not know the task {task!r}{hint}")


def chat_kwargs(tokenizer, mode: str) -> dict:
    """lm-eval arguments that ask an instruct model through its chat template, few-shot as turns."""
    use = mode == "on" or (mode == "auto" and getattr(tokenizer, "chat_template", None))
    return {"apply_chat_template": True, "fewshot_as_multiturn": True} if use else {}


def run_benchmarks(model, tokenizer, recipe) -> tuple[dict, str]:
    """({set: {task: score}}, note). Never raises for a missing lm-eval; says what happened instead."""
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        return {}, "skipped: lm-eval is not installed (pip install lm-eval)"
    cfg = recipe.evaluate
    if cfg.lm_eval_tasks is not None:
        check_tasks(list(cfg.lm_eval_tasks), "evaluate.lm_eval_tasks")
    check_tasks(list(cfg.lm_eval_english_tasks), "evaluate.lm_eval_english_tasks")
    chat = chat_kwargs(tokenizer, cfg.lm_eval_chat)
    if hasattr(model, "merge_and_unload"):  # a LoRA adapter: lm-eval wants a plain model
        model = model.merge_and_unload()
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=cfg.batch_size)
    out, notes = {}, []
    target = cfg.lm_eval_tasks if cfg.lm_eval_tasks is not None else default_tasks(recipe.language)
    if not target:
        notes.append(f"lm-eval {recipe.language}: lm-eval has none of {', '.join(candidate_tasks(recipe.language))}")
    for label, tasks in ((f"lm-eval {recipe.language}", target), ("lm-eval en", cfg.lm_eval_english_tasks)):
        if not tasks:
            continue
        try:
            res = lm_eval.simple_evaluate(model=lm, tasks=list(tasks), limit=cfg.lm_eval_limit, log_samples=False, **chat)
        except Exception as e:  # a missing dataset or unknown task must not lose the rest of the scorecard
            notes.append(f"{label} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            continue
        out[label] = fold_results(res.get("results", {}), list(tasks))
        notes.append(f"{label}: {out[label]['n']}/{len(tasks)} tasks" + (f", limit {cfg.lm_eval_limit}" if cfg.lm_eval_limit else "")
                     + (", through the chat template" if chat else ""))
    return out, "; ".join(notes)
