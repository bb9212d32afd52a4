"""lm-eval tasks: the defaults exist in the installed harness, unknown names are one line, instruct
models are asked through their chat template."""

from __future__ import annotations

import pytest

from mothertongue.config import Recipe
from mothertongue.errors import MothertongueError

lm_eval = pytest.importorskip("lm_eval")


@pytest.mark.slow  # lm-eval indexes its few thousand task files (10-25 s)
def test_default_tasks_are_known_and_unknown_names_are_one_line():
    from mothertongue.metrics.benchmarks import HUMAN_TRANSLATED, check_tasks, default_tasks

    assert default_tasks("de") == HUMAN_TRANSLATED["de"], "every German default exists in the installed lm-eval"
    check_tasks(Recipe().evaluate.lm_eval_english_tasks, "evaluate.lm_eval_english_tasks")
    with pytest.raises(MothertongueError) as e:
        check_tasks(["belebele_deu_Latn", "global_mmlu_deu"], "evaluate.lm_eval_tasks")
    msg = str(e.value)
    assert "\n" not in msg and "'global_mmlu_deu'" in msg and "global_mmlu_de" in msg


def test_chat_template_is_used_for_instruct_models(tiny_tokenizer):
    from mothertongue.metrics.benchmarks import chat_kwargs

    assert chat_kwargs(tiny_tokenizer, "auto") == {"apply_chat_template": True, "fewshot_as_multiturn": True}
    assert chat_kwargs(tiny_tokenizer, "off") == {}
    tiny_tokenizer.chat_template = None
    assert chat_kwargs(tiny_tokenizer, "auto") == {}
