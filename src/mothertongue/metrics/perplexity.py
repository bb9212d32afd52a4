"""How well a causal LM predicts plain text: perplexity and bits per byte, from one pass.

    from mothertongue.metrics.perplexity import text_scores
    text_scores(model, tokenizer, ["Der Hund schläft im Garten."])   # {"perplexity": ..., "bits_per_byte": ...}

Every token of every text is predicted exactly once, from the beginning-of-text token (EOS where
the tokenizer has none), in windows of `max_length` tokens; padding never counts.

- perplexity = exp(summed negative log-likelihood / tokens). A random model gives about the
  vocabulary size. Only comparable between models that share a tokenizer (base and tuned of one
  run do).
- bits per byte = summed negative log-likelihood in bits / UTF-8 bytes of the texts. The bytes do
  not depend on the tokenizer, so models with different vocabularies (an extended tokenizer, another
  family) compare on it where per-token perplexity cannot.
"""

from __future__ import annotations

import math


def _start_id(tok) -> int | None:
    return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id


def text_scores(model, tok, texts: list[str], batch_size: int = 8, max_length: int = 512) -> dict | None:
    """{"perplexity", "bits_per_byte", "tokens", "bytes"} of `texts` under the model, or None
    when there is no text."""
    import torch

    texts = [t for t in texts if t.strip()]
    if not texts:
        return None
    start = _start_id(tok)
    if start is None:
        raise ValueError("scoring text needs a BOS or EOS token to predict the first token from")
    device = next(model.parameters()).device
    step = max_length - 1
    windows: list[list[int]] = []
    for ids in tok(texts, add_special_tokens=False)["input_ids"]:
        windows += [[start] + ids[i : i + step] for i in range(0, len(ids), step)]
    nll, tokens = 0.0, 0
    for k in range(0, len(windows), batch_size):
        batch = windows[k : k + batch_size]
        width = max(len(w) for w in batch)
        ids = torch.tensor([w + [start] * (width - len(w)) for w in batch], device=device)
        mask = torch.tensor([[1] * len(w) + [0] * (width - len(w)) for w in batch], device=device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
        logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        keep = mask[:, 1:].bool()
        nll -= logp[keep].sum().item()
        tokens += int(keep.sum().item())
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    return {"perplexity": math.exp(nll / tokens) if tokens else None,
            "bits_per_byte": round(nll / math.log(2) / n_bytes, 4), "tokens": tokens, "bytes": n_bytes}


def perplexity(model, tok, texts: list[str], batch_size: int = 8, max_length: int = 512) -> float | None:
    scores = text_scores(model, tok, texts, batch_size, max_length)
    return scores["perplexity"] if scores else None


def bits_per_byte(model, tok, texts: list[str], max_length: int = 512, batch_size: int = 8) -> float | None:
    scores = text_scores(model, tok, texts, batch_size, max_length)
    return scores["bits_per_byte"] if scores else None
