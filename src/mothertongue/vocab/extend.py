"""Tokenizer extension: new target-language tokens the base tokenizer's own algorithm can reach.

    from mothertongue.vocab.extend import extend
    new_tok, info = extend(base_tok, german_texts, english_texts, size=2000)

Candidates come from a BPE trained (Hugging Face `tokenizers`) on the target-language text with
the base tokenizer's own normaliser and pre-tokenizer. They are appended after the base merges,
in the order they were learned, and only when both parts already exist; so every base merge keeps
its rank and the base tokenizer's output is what the extended one starts from. Then:
- a new token that shows up in the tokenization of the English texts is removed (with every
  token built on it), so English tokenizes to exactly the same ids as before;
- a new token the extended tokenizer never produces on the target text is removed (unless a used
  token is built on it), so the `size` slots go to tokens that shorten text.

Supported: byte-level BPE (GPT-2, Qwen, OLMo, SmolLM, Pythia) and SentencePiece-style Metaspace
BPE with byte fallback (Llama-2, Mistral, TinyLlama, Phi-3). For the latter, characters the base
vocabulary lacks (and so spells in bytes) may be added as single-character pieces.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path

from mothertongue.runs import StageError

BYTE_LEVEL = "byte-level BPE"
METASPACE = "Metaspace BPE with byte fallback"
SUPPORTED = f"{BYTE_LEVEL} (GPT-2, Qwen, OLMo) and {METASPACE} (Llama-2, Mistral)"
SPACE = "\u2581"
# The text llama.cpp's GGUF converter (convert_hf_to_gguf.py, get_vocab_base_pre) tokenizes to
# recognise a byte-level BPE's pre-tokenizer by the hash of the ids. Kept unchanged like English,
# so an extended Qwen/OLMo/SmolLM tokenizer still hashes to its family and converts.
LLAMA_CPP_CHECK_TEXT = '\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= нещо на Български \'\'\'\'\'\'```````""""......!!!!!!?????? I\'ve been \'told he\'s there, \'RE you sure? \'M not sure I\'ll make it, \'D you like some tea? We\'Ve a\'lL'


def _types(component: dict | None) -> list[dict]:
    """Flatten a (possibly nested Sequence) normaliser / pre-tokenizer into its parts."""
    if not component:
        return []
    inner = component.get("normalizers") or component.get("pretokenizers")
    if component.get("type") == "Sequence" and inner is not None:
        return [p for c in inner for p in _types(c)]
    return [component]


def backend_json(tok) -> dict:
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        raise StageError(f"vocab: {type(tok).__name__} has no fast (Hugging Face tokenizers) backend; extension supports {SUPPORTED}")
    return json.loads(backend.to_str())


def tokenizer_kind(tok) -> str:
    """BYTE_LEVEL or METASPACE; a StageError with the one-line reason for anything else."""
    j = backend_json(tok)
    model = j["model"]
    name = getattr(tok, "name_or_path", "") or type(tok).__name__
    if model.get("type") != "BPE":
        raise StageError(f"vocab: {name} is a {model.get('type')} tokenizer; extension supports {SUPPORTED}")
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise StageError(f"vocab: {name} marks word pieces with a prefix/suffix; extension supports {SUPPORTED}")
    pre = [c.get("type") for c in _types(j.get("pre_tokenizer"))]
    norm = _types(j.get("normalizer"))
    if "ByteLevel" in pre:
        return BYTE_LEVEL
    spaces_to_marker = "Metaspace" in pre or any(
        c.get("type") == "Replace" and c.get("content") == SPACE for c in norm
    )
    if spaces_to_marker and model.get("byte_fallback"):
        return METASPACE
    raise StageError(
        f"vocab: {name} is a BPE without a byte-level alphabet or byte fallback (new characters could not "
        f"round-trip); extension supports {SUPPORTED}"
    )


def _pairs(merges: list) -> list[tuple[str, str]]:
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]


def _word_splitter(tok, kind: str):
    """text -> pre-tokenized words, with the base tokenizer's own normaliser and pre-tokenizer."""
    from tokenizers import pre_tokenizers

    base = tok.backend_tokenizer
    pre = base.pre_tokenizer
    if kind == METASPACE:
        # Pieces never cross a word boundary (as in SentencePiece), even where the base model's
        # pre-tokenizer keeps the whole text in one piece (Metaspace split=false).
        prepend = "never" if pre is None else "first"
        pre = pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme=prepend, split=True)

    def split(text: str) -> list[str]:
        norm = base.normalizer.normalize_str(text) if base.normalizer is not None else text
        return [w for w, _ in pre.pre_tokenize_str(norm)]

    return split


def _new_characters(tok, texts: list[str], split, min_frequency: int) -> list[str]:
    """Characters the base vocabulary spells in bytes (byte fallback), by frequency."""
    vocab = tok.get_vocab()
    counts = Counter(c for t in texts for w in split(t) for c in w if c not in vocab)
    return [c for c, n in sorted(counts.items(), key=lambda x: (-x[1], x[0])) if n >= min_frequency]


def _repeated(counts: Counter, chunk: int = 1000):
    """Each word as often as it occurs, in lines of at most `chunk` words (the trainer counts them)."""
    for w, n in counts.items():
        while n > 0:
            yield " ".join([w] * min(n, chunk))
            n -= chunk


def _candidates(tok, kind: str, texts: list[str], size: int, min_frequency: int) -> list[tuple[str | None, str | None, str]]:
    """(left, right, token) in the order BPE training continued from the base segmentation
    learns them (new single characters first, as (None, None, char)).

    Each word of the target text is segmented by the base tokenizer's own BPE; each base token is
    then written as one private-use character, and a `tokenizers` BpeTrainer learns merges on
    those words: the merges the base tokenizer would have learned next on this text."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    split = _word_splitter(tok, kind)
    chars = _new_characters(tok, texts, split, min_frequency) if kind == METASPACE else []
    tk = _build(backend_json(tok), [(None, None, c) for c in chars], 0, ids_from_vocab=True)[0]
    word_counts = Counter(w for t in texts for w in split(t))
    code: dict[str, str] = {}
    mapped: Counter = Counter()
    for w, n in word_counts.items():
        pieces = [p.value for p in tk.model.tokenize(w)]
        mapped["".join(code.setdefault(p, chr(0xF0000 + len(code))) for p in pieces)] += n
    back = {c: p for p, c in code.items()}
    trainer = trainers.BpeTrainer(vocab_size=len(code) + 2 * size, min_frequency=min_frequency, show_progress=False)
    fresh = Tokenizer(models.BPE())
    fresh.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fresh.train_from_iterator(_repeated(mapped), trainer=trainer)

    def text(s: str) -> str:
        return "".join(back[c] for c in s)

    out: list[tuple[str | None, str | None, str]] = [(None, None, c) for c in chars]
    for a, b in _pairs(json.loads(fresh.to_str())["model"]["merges"]):
        ta, tb = text(a), text(b)
        if not (ta.startswith("<0x") or tb.startswith("<0x")):  # byte-fallback pieces do not merge
            out.append((ta, tb, ta + tb))
    return out


def _build(base: dict, picked: list[tuple[str | None, str | None, str]], first_id: int, ids_from_vocab: bool = False):
    from tokenizers import Tokenizer

    j = json.loads(json.dumps(base))
    if ids_from_vocab:
        first_id = 1 + max([*j["model"]["vocab"].values(), *(a["id"] for a in j.get("added_tokens", []))])
    # `tokenizers` numbers added tokens after the model's vocabulary size when it loads a file, so
    # new ids above the added (special) tokens would push those to other ids. With the added
    # tokens written into the model's vocabulary at their own ids, every id stays where it was
    # (the BPE never produces them: no merge leads there, and added tokens are split off first).
    for a in j.get("added_tokens", []):
        j["model"]["vocab"].setdefault(a["content"], a["id"])
    for k, (_, _, t) in enumerate(picked):
        j["model"]["vocab"][t] = first_id + k
    j["model"]["merges"] = [list(p) for p in _pairs(j["model"]["merges"])] + [[a, b] for a, b, _ in picked if a is not None]
    return Tokenizer.from_str(json.dumps(j, ensure_ascii=False)), j


def _without(picked: list, drop: set[str]) -> list:
    """`picked` minus `drop` and every token built (transitively) on a dropped one."""
    gone, out = set(drop), []
    for a, b, t in picked:
        if t in gone or a in gone or b in gone:
            gone.add(t)
        else:
            out.append((a, b, t))
    return out


def _keep_used(picked: list, used: set[str]) -> list:
    """Tokens that are used, or parts (transitively) of a used token; order kept."""
    keep = set(used)
    for a, b, t in reversed(picked):
        if t in keep:
            keep.update(x for x in (a, b) if x is not None)
    return [p for p in picked if p[2] in keep]


def _new_ids(tk, texts: list[str], first_id: int) -> Counter:
    counts: Counter = Counter()
    for enc in tk.encode_batch(texts, add_special_tokens=False):
        counts.update(i for i in enc.ids if i >= first_id)
    return counts


def extend(tok, texts: list[str], english: list[str], size: int, min_frequency: int = 2) -> tuple[object, dict]:
    """The extended tokenizer (same class, template and special tokens) and what was done."""
    from transformers import AutoTokenizer

    kind = tokenizer_kind(tok)
    english = [*english, LLAMA_CPP_CHECK_TEXT]
    base = backend_json(tok)
    vocab = base["model"]["vocab"]
    have = set(vocab) | {a["content"] for a in base.get("added_tokens", [])}
    first_id = 1 + max([*vocab.values(), *(a["id"] for a in base.get("added_tokens", []))])
    if len(set(vocab.values()) | {a["id"] for a in base.get("added_tokens", [])}) != first_id:
        raise StageError(f"vocab: {tok.name_or_path} has unused ids below its largest one; new tokens cannot be numbered after it")

    picked, skipped_parts = [], 0
    for a, b, t in _candidates(tok, kind, texts, size, min_frequency):
        if t in have:
            continue
        if a is not None and (a not in have or b not in have):
            skipped_parts += 1
            continue
        if kind == METASPACE and SPACE in t[1:]:
            continue
        have.add(t)
        picked.append((a, b, t))
    n_candidates = len(picked)

    english_removed: set[str] = set()
    for _ in range(10):
        tk, _j = _build(base, picked, first_id)
        id_to_tok = {first_id + k: p[2] for k, p in enumerate(picked)}
        fired = {id_to_tok[i] for i in _new_ids(tk, english, first_id)}
        used = {id_to_tok[i] for i, n in _new_ids(tk, texts, first_id).items() if n >= min_frequency}
        before = [p[2] for p in picked]
        english_removed |= fired
        picked = _keep_used(_without(picked, fired), used - fired)[:size]
        if not fired and [p[2] for p in picked] == before:
            break
    tk, j = _build(base, picked, first_id)
    if english and _new_ids(tk, english, first_id):
        raise StageError("vocab: could not find an extension that leaves the English texts' tokens unchanged")

    with tempfile.TemporaryDirectory() as d:
        tok.save_pretrained(d)
        for stale in ("vocab.json", "merges.txt", "tokenizer.model"):
            (Path(d) / stale).unlink(missing_ok=True)  # the slow files would say the old vocabulary
        (Path(d) / "tokenizer.json").write_text(json.dumps(j, ensure_ascii=False), encoding="utf-8")
        cfg_path = Path(d) / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        # Model-specific classes (Qwen2Tokenizer, LlamaTokenizer, ...) rebuild their BPE from vocab
        # and merges and then re-add the special tokens at ids of their own choosing, which collide
        # with the new tokens; the generic class loads tokenizer.json as it is.
        cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
        cfg_path.write_text(json.dumps(cfg, ensure_ascii=False, indent=2), encoding="utf-8")
        new_tok = AutoTokenizer.from_pretrained(d)
    info = {
        "kind": kind,
        "base_size": len(tok),
        "added": len(picked),
        "size_cap": size,
        "first_new_id": first_id,
        "candidates": n_candidates,
        "candidates_missing_a_part": skipped_parts,
        "removed_because_english_used_them": len(english_removed),
        "new_characters": sum(1 for a, _, _ in picked if a is None),
        "examples": [new_tok.convert_tokens_to_string([t]) for _, _, t in picked[:20]],
    }
    return new_tok, info


def new_token_ids(old_tok, new_tok) -> list[int]:
    """Ids of the tokens `new_tok` has that `old_tok` has not, ascending."""
    old = set(old_tok.get_vocab())
    return sorted(i for t, i in new_tok.get_vocab().items() if t not in old)


def old_pieces(old_tok, token: str) -> list[int]:
    """The base tokenizer's ids for a new token's string (its BPE model on the piece itself, so
    no normaliser or pre-tokenizer adds a space marker)."""
    model = old_tok.backend_tokenizer.model
    vocab = old_tok.get_vocab()
    return [vocab[t.value] for t in model.tokenize(token) if t.value in vocab]
