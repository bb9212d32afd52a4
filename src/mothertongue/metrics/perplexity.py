"""Perplexity of a causal LM on plain text: exp(mean negative log-likelihood per token).

    from mothertongue.metrics.perplexity import perplexity
    perplexity(model, tokenizer, ["Der Hund schläft im Garten."])

Token-weighted over the whole corpus (every predicted token counts once, padding never), with
each text cut at `max_length` tokens. A model that learned the language gives lower numbers; a
random model gives about the vocabulary size. Only comparable between models that share a
tokenizer (base and tuned of one run do).
"""

from __future__ import annotations

import math


def perplexity(model, tokenizer, texts: list[str], batch_size: int = 8, max_length: int = 512) -> float | None:
    import torch

    texts = [t for t in texts if t.strip()]
    if not texts:
        return None
    device = next(model.parameters()).device
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total_nll, total_tokens = 0.0, 0
    for start in range(0, len(texts), batch_size):
        ids = [(bos + tokenizer(t, add_special_tokens=False)["input_ids"])[:max_length] for t in texts[start : start + batch_size]]
        ids = [x for x in ids if len(x) >= 2]
        if not ids:
            continue
        width = max(len(x) for x in ids)
        input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids], device=device)
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], device=device)
        with torch.no_grad():
            logits = model(input_ids=input_ids, attention_mask=mask).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        target = input_ids[:, 1:]
        nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        keep = mask[:, 1:].bool()
        total_nll += nll[keep].sum().item()
        total_tokens += int(keep.sum().item())
    return math.exp(total_nll / total_tokens) if total_tokens else None
