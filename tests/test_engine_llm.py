"""The `llm` engine on a tiny chat model trained here to translate with the engine's own prompt."""

from __future__ import annotations

import pytest

from mothertongue.config import load_recipe
from mothertongue.conversation import Conversation, Message, write_jsonl
from mothertongue.engines import load_engine
from mothertongue.engines.llm import DEFAULT_PROMPT
from mothertongue.runs import atomic_write_json, run_stage

# A word-for-word synthetic "German": the model must learn the mapping from the prompt's text.
LEXICON = {"red": "rot", "blue": "blau", "green": "grün", "cat": "Katze", "dog": "Hund", "house": "Haus",
           "tree": "Baum", "big": "groß", "small": "klein", "the": "die"}
SENTENCES = [f"the {a} {n}" for a in ("red", "blue", "green", "big", "small") for n in ("cat", "dog", "house", "tree")]


def _german(sentence: str) -> str:
    return " ".join(LEXICON[w] for w in sentence.split())


@pytest.mark.slow
def test_llm_engine_translates_with_a_tiny_trained_chat_model(tmp_path):
    convs = [
        Conversation(f"t{i}", [Message("user", DEFAULT_PROMPT.format(src_name="English", tgt_name="German", text=s)),
                               Message("assistant", _german(s))])
        for i, s in enumerate(SENTENCES)
    ]
    ingest = tmp_path / "run" / "ingest"
    ingest.mkdir(parents=True)
    write_jsonl(ingest / "train.jsonl", convs)
    for split in ("dev", "test", "pairs"):
        write_jsonl(ingest / f"{split}.jsonl", [])
    atomic_write_json(ingest / "manifest.json", {"stage": "ingest", "fingerprint": "test"})
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(f"run_dir: {tmp_path / 'run'}\n")
    r = load_recipe(recipe_file, [
        "build.template=chatml", "build.system_prompt=none", "train.adapter=full", "train.epochs=40",
        "train.learning_rate=0.003", "train.batch_size=8", "tiny_model.hidden_size=96",
        "tiny_model.intermediate_size=256", "tiny_model.num_hidden_layers=2", "tiny_model.num_attention_heads=4",
        "tiny_model.vocab_size=400",
    ])
    run_stage(r, "build")
    run_stage(r, "train")
    engine = load_engine("llm", str(tmp_path / "run" / "train" / "model"), "cpu",
                         {"backend": "transformers", "max_new_tokens": 16, "batch_size": 8})
    out = engine.translate(SENTENCES, "en", "de")
    assert len(out) == len(SENTENCES)
    exact = sum(o == _german(s) for o, s in zip(out, SENTENCES))
    assert exact >= 0.9 * len(SENTENCES), list(zip(SENTENCES, out))
    # the prompt the engine renders is the chat-time prompt the model was trained on
    assert engine.prompt("the red cat", "en", "de").endswith("<|im_start|>assistant\n")
