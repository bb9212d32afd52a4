"""`mothertongue doctor RECIPE`: the family checks on the user's own base model, before a long run.

    pytest -q tests/test_doctor.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO
from family_models import FAMILIES, TOKENIZERS, copy_tokenizer, shrunk_config

pytestmark = pytest.mark.real_models


def _folder(name, dest):
    """Tokenizer files and (shrunk) config of a family: all doctor reads, no weights needed."""
    copy_tokenizer(FAMILIES[name], dest)
    shrunk_config(TOKENIZERS / FAMILIES[name].folder, FAMILIES[name]).save_pretrained(dest)
    return dest


def _recipe(tmp_path, base, *overrides):
    from mothertongue.config import load_recipe

    r = tmp_path / "r.yaml"
    r.write_text(f"name: d\nlanguage: de\nbase_model: {base}\nrun_dir: {tmp_path / 'run'}\n")
    return load_recipe(r, list(overrides))


def _run(recipe, **kw):
    from mothertongue.doctor import doctor

    lines = []
    return doctor(recipe, log=lines.append, **kw), "\n".join(lines)


def test_a_good_model_passes(tmp_path):
    code, out = _run(_recipe(tmp_path, _folder("mistral-v0.3", tmp_path / "m")))
    assert code == 0, out
    for name in ("tokenizer", "end of turn", "template", "renders", "mask", "prefix", "pad token", "architecture",
                 "ctranslate2"):
        assert re.search(rf"^{name} +ok ", out, re.M), (name, out)
    assert re.search(r"^gguf +skip", out, re.M)
    assert re.search(r"^template .*last user turn", out, re.M)  # Mistral v0.3 has no system turn
    assert re.search(r"^mask .*one example per answer", out, re.M)
    assert "'</s>'" in out and "ready to train" in out


def test_default_system_prompt_is_a_warning_when_the_recipe_sets_none(tmp_path):
    base = _folder("smollm2", tmp_path / "s")
    code, out = _run(_recipe(tmp_path, base, "build.system_prompt=none"))
    assert code == 0 and re.search(r"^template +WARN .*named SmolLM", out, re.M), out
    code, out = _run(_recipe(tmp_path, base))  # the recipe's German system prompt replaces it
    assert code == 0 and re.search(r"^template +ok ", out, re.M), out


def test_a_vocabulary_less_tokenizer_fails(tmp_path):
    base = tmp_path / "llama2"
    base.mkdir()
    for f in ("tokenizer_config.json", "config.json"):  # the real folder, as shipped: no tokenizer.model
        (base / f).write_bytes((TOKENIZERS / "llama-2-7b-chat" / f).read_bytes())
    code, out = _run(_recipe(tmp_path, base))
    assert code == 1 and re.search(r"^tokenizer +FAIL", out, re.M) and "only 3 tokens" in out, out


def test_a_template_whose_prompt_differs_fails(tmp_path):
    base = _folder("pythia", tmp_path / "p")
    bad = tmp_path / "bad.jinja"
    bad.write_text("{% for m in messages %}{{ m['role'] + ': ' + m['content'] + eos_token + '\\n' }}{% endfor %}"
                   "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")
    code, out = _run(_recipe(tmp_path, base, f"build.template={bad}"))
    assert code == 1 and re.search(r"^prefix +FAIL", out, re.M) and "not a prefix" in out, out


def test_a_missing_end_of_turn_token_fails(tmp_path):
    base = _folder("gpt2", tmp_path / "g")  # GPT-2 has no template: a file that ends turns with nothing
    tmpl = tmp_path / "plain.jinja"
    tmpl.write_text("{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"
                    "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}")
    code, out = _run(_recipe(tmp_path, base, f"build.template={tmpl}"))
    assert code == 1 and "mask" in out and "FAIL" in out, out


@pytest.mark.slow  # a CLI process, ~5 s
def test_cli_prints_the_table_and_exits_non_zero_on_failure(tmp_path):
    base = tmp_path / "llama2"
    base.mkdir()
    for f in ("tokenizer_config.json", "config.json"):
        (base / f).write_bytes((TOKENIZERS / "llama-2-7b-chat" / f).read_bytes())
    r = tmp_path / "r.yaml"
    r.write_text(f"name: d\nlanguage: de\nbase_model: {base}\n")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    p = subprocess.run([sys.executable, "-m", "mothertongue", "doctor", str(r)], capture_output=True, text=True,
                       env=env, cwd=tmp_path)
    assert p.returncode == 1 and re.search(r"^tokenizer +FAIL", p.stdout, re.M) and "Traceback" not in p.stderr, (p.stdout, p.stderr)
    p = subprocess.run([sys.executable, "-m", "mothertongue", "doctor", str(tmp_path / "nope.yaml")],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.parametrize("name,expect", [("qwen2.5", "pre-tokenizer 'qwen2'"), ("tinyllama", "'sentencepiece'"),
                                         ("llama-3", "pre-tokenizer '"),  # the fetched llama.cpp knows its hash
                                         ("phi-3.5", "strip the whitespace next to them")])
def test_gguf_convertibility_is_asked_of_llama_cpp(tmp_path, name, expect):
    from mothertongue.doctor import check_gguf

    c = check_gguf(str(_folder(name, tmp_path / name)), fetch=True, log=lambda m: None)
    assert expect in c.detail and (c.status == "warn") == (name == "phi-3.5"), c
