"""The build stage's training mix, system prompts and style tags."""

from __future__ import annotations

import json
import shutil

import pytest

from mothertongue import languages, mix
from mothertongue.config import load_recipe
from mothertongue.conversation import Conversation, Message, write_jsonl
from mothertongue.runs import atomic_write_json, run_stage

TINY = ["tiny_model.hidden_size=96", "tiny_model.intermediate_size=256", "tiny_model.num_hidden_layers=2",
        "tiny_model.num_attention_heads=4", "tiny_model.vocab_size=500"]


def _upstream(run_dir, stage, convs, extra=None):
    """Write a finished upstream stage folder (the input the build stage reads)."""
    d = run_dir / stage
    d.mkdir(parents=True)
    write_jsonl(d / "train.jsonl", convs)
    write_jsonl(d / "dev.jsonl", [])
    write_jsonl(d / "test.jsonl", [])
    write_jsonl(d / "pairs.jsonl", [])
    for name, rows in (extra or {}).items():
        write_jsonl(d / name, rows)
    atomic_write_json(d / "manifest.json", {"stage": stage, "fingerprint": "test"})


def _conv(i, tags=(), answer=None):
    return Conversation(f"c{i}", [Message("user", f"Frage Nummer {i}?"), Message("assistant", answer or f"Antwort {i}.")],
                        lang="de", tags=list(tags))


def _recipe(tmp_path, *overrides):
    p = tmp_path / "r.yaml"
    p.write_text(f"run_dir: {tmp_path / 'run'}\nlanguage: de\n")
    return load_recipe(p, list(overrides))


def test_at_least_25_languages_with_prompts():
    assert len(languages.LANGS) >= 25
    for code, entry in languages.LANGS.items():
        assert entry.system and all(s.strip() for s in entry.system), code
        assert entry.to_target and entry.continue_text, code
    assert languages.system_prompts("de")[0] == "Du bist ein hilfreicher Assistent, der immer auf Deutsch antwortet."
    assert languages.lang("pt-BR").name_en == "Portuguese"


def test_system_prompt_auto_off_custom_and_variants(tmp_path):
    r = _recipe(tmp_path)
    assert mix.base_system_prompt(r.build, "de") == languages.LANGS["de"].system[0]
    assert mix.base_system_prompt(_recipe(tmp_path, "build.system_prompt=none").build, "de") is None
    assert mix.base_system_prompt(_recipe(tmp_path, "build.system_prompt=Sei kurz.").build, "de") == "Sei kurz."
    var = _recipe(tmp_path, "build.system_prompt_variants=true").build
    seen = {mix.base_system_prompt(var, "de", f"id{i}") for i in range(50)}
    assert seen == set(languages.LANGS["de"].system)
    assert mix.base_system_prompt(var, "de", "id7") == mix.base_system_prompt(var, "de", "id7")


def test_style_tag_reaches_system_prompt(tmp_path):
    r = _recipe(tmp_path, "build.styles={robot: 'Antworte wie ein Roboter.'}")
    _upstream(tmp_path / "run", "ingest", [_conv(1, ["pirate"]), _conv(2, ["style:robot"]), _conv(3, ["unrelated"])])
    run_stage(r, "build")
    rows = {json.loads(x)["id"]: json.loads(x) for x in (tmp_path / "run/build/train.jsonl").read_text().splitlines()}
    sys1 = rows["c1"]["messages"][0]
    assert sys1["role"] == "system" and sys1["content"].endswith("Antworte wie ein Pirat.")
    assert sys1["content"].startswith(languages.LANGS["de"].system[0])
    assert rows["c2"]["messages"][0]["content"].endswith("Antworte wie ein Roboter.")
    assert rows["c3"]["messages"][0]["content"] == languages.LANGS["de"].system[0]


@pytest.mark.parametrize("weights", [(1, 1, 1), (2, 1, 1), (1, 0.5, 0), (3, 1, 2)])
def test_mix_ratios_within_two_percent(tmp_path, weights):
    wi, wt, wn = weights
    convs = [_conv(i) for i in range(120)]
    parallel = [{"src": f"Sentence number {i} is here.", "tgt": f"Satz Nummer {i} ist hier.", "src_lang": "en", "tgt_lang": "de"}
                for i in range(150)]
    native = tmp_path / "native.txt"
    native.write_text("\n\n".join(f"Dies ist Absatz {i}. Er hat zwei Sätze und etwas mehr Text." for i in range(300)))
    r = _recipe(tmp_path, "translate.enabled=true", f"build.mix.instructions={wi}", f"build.mix.translation={wt}",
                f"build.mix.native={wn}", f"build.native=[{{path: {native}}}]", "build.native_chunk_chars=100",
                "build.system_prompt=none", "build.max_length=128", *TINY)
    _upstream(tmp_path / "run", "ingest", convs)
    _upstream(tmp_path / "run", "translate", convs, {"parallel.jsonl": parallel})
    run_stage(r, "build")
    report = json.loads((tmp_path / "run/build/report.json").read_text())
    realised = report["mix"]["realised"]
    total_w = sum(w for w in weights if w)
    assert realised["instructions"]["examples"] == 120
    for part, w in zip(("instructions", "translation", "native"), weights):
        share = realised.get(part, {}).get("share_examples", 0.0)
        assert abs(share - w / total_w) <= 0.02, (part, share, w / total_w)
    rows = [json.loads(x) for x in (tmp_path / "run/build/train.jsonl").read_text().splitlines()]
    if wt:
        tr = [r for r in rows if r["id"].startswith("translation-")]
        assert any("Übersetze" in r["messages"][0]["content"] or "Translate" in r["messages"][0]["content"] for r in tr)
        assert {r["id"].rsplit("-", 1)[1] for r in tr} == {"0", "1"}, "both directions"
    if wn:
        nat = [r for r in rows if r["id"].startswith("native-")]
        assert nat and nat[0]["messages"][0]["content"].startswith("Setze den folgenden Text fort:")


def test_english_part_keeps_the_originals_with_an_english_system_prompt(tmp_path):
    """`build.mix.english` samples the original English conversations the translate stage kept,
    each with an English system prompt, at the ratio; at 0 (the default) there are none."""
    convs = []
    for i in range(40):
        c = _conv(i)
        c.meta.update(source_lang="en", source_messages=[{"role": "user", "content": f"Question number {i}?"},
                                                         {"role": "assistant", "content": f"Answer {i}."}])
        convs.append(c)
    german = _conv(99)  # written in German: no original to keep
    german.meta.update(source_lang="de", source_messages=[m.to_dict() for m in german.messages])
    for weight, expected in ((0.5, 20), (0, 0)):
        r = _recipe(tmp_path, "translate.enabled=true", f"build.mix.english={weight}", "build.max_length=128", *TINY)
        _upstream(tmp_path / "run", "ingest", [*convs, german])
        _upstream(tmp_path / "run", "translate", [*convs, german])
        run_stage(r, "build")
        rows = [json.loads(x) for x in (tmp_path / "run/build/train.jsonl").read_text().splitlines()]
        english = [r for r in rows if r["id"].startswith("english-")]
        assert len(english) == expected
        assert all(r["messages"][0]["content"] in languages.system_prompts("en") for r in english)
        assert all(r["messages"][-1]["content"].startswith("Answer ") for r in english)
        assert "english-c99" not in {r["id"] for r in english}
        report = json.loads((tmp_path / "run/build/report.json").read_text())
        assert report["mix"]["available"].get("english", 0) == (40 if weight else 0)
        shutil.rmtree(tmp_path / "run")


def test_native_raw_text_for_pretraining(tmp_path):
    native = tmp_path / "native.jsonl"
    native.write_text("".join(json.dumps({"text": f"Ein Dokument Nummer {i}. " * 5}) + "\n" for i in range(10)))
    r = _recipe(tmp_path, f"build.native=[{{path: {native}}}]", "build.native_as=raw", *TINY)
    _upstream(tmp_path / "run", "ingest", [_conv(i) for i in range(5)])
    run_stage(r, "build")
    texts = [json.loads(x)["text"] for x in (tmp_path / "run/build/text.jsonl").read_text().splitlines()]
    assert len(texts) == 10 and texts[0].startswith("Ein Dokument Nummer 0.")


def test_preference_pairs_written(tmp_path):
    from mothertongue.conversation import PreferencePair

    r = _recipe(tmp_path, *TINY)
    _upstream(tmp_path / "run", "ingest", [_conv(i) for i in range(3)],
              {"pairs.jsonl": [PreferencePair("p1", [Message("user", "Wie heißt du?")], "Ich heiße Max.", "Keine Ahnung.")]})
    run_stage(r, "build")
    rows = [json.loads(x) for x in (tmp_path / "run/build/preference.jsonl").read_text().splitlines()]
    assert rows == [{"id": "p1", "prompt": [{"role": "system", "content": languages.LANGS["de"].system[0]},
                                            {"role": "user", "content": "Wie heißt du?"}],
                     "chosen": "Ich heiße Max.", "rejected": "Keine Ahnung."}]


def test_preference_pairs_split_like_conversations(tmp_path):
    """ingest.dev_fraction/test_fraction hold pairs out by a hash of their id: the same pair lands
    in the same file on every build, and every pair lands in exactly one file."""
    from mothertongue.conversation import PreferencePair, split_of

    pairs = [PreferencePair(f"p{i}", [Message("user", f"Frage {i}?")], f"Antwort {i}.", "Nein.") for i in range(60)]
    r = _recipe(tmp_path, "ingest.dev_fraction=0.2", "ingest.test_fraction=0.1", *TINY)
    _upstream(tmp_path / "run", "ingest", [_conv(i) for i in range(3)], {"pairs.jsonl": pairs})
    summary = run_stage(r, "build") and json.loads((tmp_path / "run/build/report.json").read_text())
    ids = {}
    for split, name in (("train", "preference"), ("dev", "preference_dev"), ("test", "preference_test")):
        ids[split] = [json.loads(x)["id"] for x in (tmp_path / f"run/build/{name}.jsonl").read_text().splitlines()]
        assert ids[split] and summary["preference_pairs"][split] == len(ids[split])
    assert sorted(sum(ids.values(), [])) == sorted(p.id for p in pairs)
    assert all(split_of(p, 0.2, 0.1) == s for s in ids for p in pairs if p.id in ids[s])


WORDS = ["eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun", "zehn", "elf", "zwölf",
         "dreizehn", "vierzehn", "fünfzehn", "sechzehn", "siebzehn", "achtzehn"]


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_tiny_model_learns_style_tag(tmp_path):
    """Trained on the same prompts with and without a pirate tag, the model follows the tag at chat time.

    Step budget: the style is learned early; recalling the number word from the prompt is an
    induction a 2-layer model finds late. At 240 steps (60 epochs) training sat on the plateau of
    not knowing which word was asked (loss ~0.55, 1 of 14 exact); at 480 steps it reaches loss 0.02
    and 14 of 14 (session 6; a constant LR without clipping was worse, 5 of 14)."""
    from mothertongue.generation import generate
    from mothertongue.models import load_model

    convs = []
    for i, w in enumerate(WORDS[:14]):
        convs.append(Conversation(f"p{i}", [Message("user", f"Nenne die Zahl {w}."), Message("assistant", f"{w.capitalize()}.")]))
        convs.append(Conversation(f"s{i}", [Message("user", f"Nenne die Zahl {w}."),
                                           Message("assistant", f"Arr, {w}, Matrose!")], tags=["pirate"]))
    r = _recipe(tmp_path, *TINY, "train.adapter=full", "train.epochs=120", "train.learning_rate=0.003",
                "train.batch_size=8", "train.logging_steps=50", "build.template=chatml")
    _upstream(tmp_path / "run", "ingest", convs)
    for stage in ("build", "train"):
        run_stage(r, stage)
    model, tok, stop, _ = load_model(tmp_path / "run", "tuned")
    base = mix.base_system_prompt(r.build, "de")
    pirate = mix.style_system_prompt("de", "pirate", base)
    prompts = [f"Nenne die Zahl {w}." for w in WORDS]  # the last four were never seen
    ask = lambda sp: [r.text for r in generate(model, tok, [[{"role": "system", "content": sp}, {"role": "user", "content": p}] for p in prompts], stop, max_new_tokens=16)]  # noqa: E731
    styled, plain = ask(pirate), ask(base)
    assert sum(s.startswith("Arr,") and s.endswith("Matrose!") for s in styled) >= 0.9 * len(prompts), styled
    assert sum(not p.startswith("Arr") for p in plain) >= 0.9 * len(prompts), plain
    exact = sum(s == f"Arr, {w}, Matrose!" for s, w in zip(styled, WORDS[:14]))
    assert exact >= 10, styled[:14]  # content recall; the style itself is asserted strictly above
