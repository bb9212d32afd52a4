"""Embedding rows for new tokens, and an optional warm-up of the new rows alone.

    from mothertongue.vocab.embeddings import grow_embeddings
    grow_embeddings(model, base_tok, new_tok, "mean-of-subtokens")

Initialisations (input rows and, for untied models, output rows alike):
- `mean-of-subtokens` (default): the mean of the rows of the pieces the base tokenizer gives the
  new token's string; the model starts out reading "Straße" as it read "Stra" + "ße".
- `mean`: the mean of all existing rows (a new token means "some token").
- `random`: normal(0, initializer_range), the architecture's own initialisation.
The matrix is padded to a multiple of `pad_to` rows (tensor cores, llama.cpp); padding rows are
the mean row. Existing rows are untouched, so on text without new tokens the extended model gives
the base model's logits. Tied input/output embeddings stay one tensor.

Bits per byte, which compares models whose vocabularies differ, is in `metrics/perplexity.py`.
"""

from __future__ import annotations

INITS = ("mean-of-subtokens", "mean", "random")


def grow_embeddings(model, base_tok, new_tok, init: str = "mean-of-subtokens", pad_to: int = 64, seed: int = 0) -> dict:
    """Resize the model's embeddings for `new_tok` and initialise the new rows; returns counts."""
    import torch

    from mothertongue.vocab.extend import new_token_ids, old_pieces

    if init not in INITS:
        raise ValueError(f"vocab.init must be one of {', '.join(INITS)}")
    emb_in = model.get_input_embeddings()
    old_rows = emb_in.weight.shape[0]
    new_ids = new_token_ids(base_tok, new_tok)
    needed = max([old_rows, len(new_tok), *(i + 1 for i in new_ids)])
    rows = -(-needed // pad_to) * pad_to if pad_to > 1 else needed
    tied = bool(getattr(model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config,
                        "tie_word_embeddings", False))
    model.resize_token_embeddings(rows, mean_resizing=False)
    emb_in = model.get_input_embeddings()
    emb_out = model.get_output_embeddings()
    tables = [emb_in.weight] + ([emb_out.weight] if emb_out is not None and emb_out.weight is not emb_in.weight else [])
    base_vocab = len(base_tok)
    id_to_token = {i: t for t, i in new_tok.get_vocab().items()}
    gen = torch.Generator().manual_seed(seed)
    std = float(getattr(model.config, "initializer_range", 0.02))
    fallback = 0
    with torch.no_grad():
        for w in tables:
            mean = w[:base_vocab].float().mean(0)
            w[old_rows:] = mean.to(w.dtype)  # padding rows; new tokens overwritten below
            for i in new_ids:
                if init == "mean":
                    row = mean
                elif init == "random":
                    row = torch.randn(w.shape[1], generator=gen) * std
                else:
                    pieces = old_pieces(base_tok, id_to_token[i])
                    if pieces:
                        row = w[pieces].float().mean(0)
                    else:
                        row, fallback = mean, fallback + 1
                w[i] = row.to(w.dtype)
    if tied:
        model.tie_weights()
    return {"rows_before": old_rows, "rows_after": rows, "new_tokens": len(new_ids), "init": init,
            "tied": tied, "mean_fallbacks": fallback // max(1, len(tables))}


def warm_up_new_rows(model, tok, texts: list[str], new_ids: list[int], steps: int, learning_rate: float,
                     max_length: int = 256, batch_size: int = 4, seed: int = 0) -> list[float]:
    """Train only the new tokens' rows (input and output) for `steps` steps on `texts`, the rest
    of the model frozen, so they move toward the model before full training starts (the new rows
    start as averages; the old ones already fit the model). Returns the loss per step."""
    import random

    import torch

    if steps <= 0 or not new_ids:
        return []
    stream = [i for ids in tok(texts, add_special_tokens=False)["input_ids"] for i in ids + [tok.eos_token_id or 0]]
    if len(stream) < 2:
        return []
    rows = [s for s in range(0, max(1, len(stream) - 1), max_length)]
    out_emb = model.get_output_embeddings()
    tables = [model.get_input_embeddings().weight] + ([out_emb.weight] if out_emb is not None else [])
    params = list({id(p): p for p in tables}.values())  # one tensor when tied
    for p in model.parameters():
        p.requires_grad_(False)
    keep = torch.zeros(model.get_input_embeddings().weight.shape[0], 1)
    keep[new_ids] = 1.0
    hooks = []
    for p in params:
        p.requires_grad_(True)
        hooks.append(p.register_hook(lambda g: g * keep.to(g.dtype)))
    # No weight decay: it would shrink the old rows, whose gradient is masked to zero.
    opt = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    rng = random.Random(seed)
    model.train()
    losses = []
    for _ in range(steps):
        starts = [rng.choice(rows) for _ in range(batch_size)]
        batch = [stream[s:s + max_length] for s in starts]
        width = min(len(b) for b in batch)
        ids = torch.tensor([b[:width] for b in batch])
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(round(out.loss.item(), 4))
    for h in hooks:
        h.remove()
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return losses
