"""Generation shared by chat, evaluate and serve: same prompt rendering, same end-of-turn stop.

    from mothertongue.generation import generate, stream_generate, generation_kwargs

Presets: greedy, beam (num_beams + no_repeat_ngram_size from the chat config), sample
(temperature + top_p). `generate` answers a batch; `stream_generate` streams one answer.
"""

from __future__ import annotations

from dataclasses import dataclass

PRESETS = {
    "greedy": {"do_sample": False, "num_beams": 1},
    "beam": {"do_sample": False},  # num_beams and no_repeat_ngram_size come from the chat config
    "sample": {"do_sample": True},
}


@dataclass
class Reply:
    text: str
    ended: bool  # stopped at an end-of-turn token (not cut by max_new_tokens)
    new_tokens: int
    prompt_tokens: int = 0


def generation_kwargs(preset: str, chat_cfg=None, max_new_tokens: int = 256) -> dict:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    kw = dict(PRESETS[preset], max_new_tokens=max_new_tokens)
    if preset == "beam":
        kw["num_beams"] = chat_cfg.num_beams if chat_cfg else 4
        kw["no_repeat_ngram_size"] = chat_cfg.no_repeat_ngram_size if chat_cfg else 3
    if preset == "sample":
        kw["temperature"] = chat_cfg.temperature if chat_cfg else 0.7
        kw["top_p"] = chat_cfg.top_p if chat_cfg else 0.9
    return kw


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def generate(model, tokenizer, conversations: list[list[dict]], stop_ids: list[int], batch_size: int = 16,
             streamer=None, **gen_kwargs) -> list[Reply]:
    """Answer each conversation (a list of messages ending with a user turn)."""
    import torch

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    replies: list[Reply] = []
    for start in range(0, len(conversations), batch_size):
        batch = [prompt_ids(tokenizer, m) for m in conversations[start : start + batch_size]]
        width = max(len(b) for b in batch)
        input_ids = torch.tensor([[pad] * (width - len(b)) + b for b in batch], device=device)
        attention = torch.tensor([[0] * (width - len(b)) + [1] * len(b) for b in batch], device=device)
        with torch.no_grad():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                eos_token_id=stop_ids,
                pad_token_id=pad,
                streamer=streamer,
                **gen_kwargs,
            )
        for prompt, row in zip(batch, out[:, width:].tolist(), strict=True):
            ended = False
            toks = []
            for t in row:
                if t in stop_ids:
                    ended = True
                    break
                toks.append(t)
            text = tokenizer.decode(toks, skip_special_tokens=True).strip()
            replies.append(Reply(text, ended, len(toks), len(prompt)))
    return replies


def callback_streamer(tokenizer, on_text):
    """A transformers streamer that hands decoded text pieces to a callback (REPL, HTTP stream).

    Built on `TextStreamer` so word boundaries and multi-byte characters are handled the way
    transformers does it; only the printing is replaced."""
    from transformers import TextStreamer

    class _Streamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                on_text(text)

    return _Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


def stream_generate(model, tokenizer, messages: list[dict], stop_ids: list[int], on_text,
                    **gen_kwargs) -> Reply:
    """Answer one conversation, calling `on_text(piece)` as text is produced.

    Pieces joined equal `Reply.text` (leading and trailing whitespace of the reply are dropped,
    as `generate` strips them). Beam search cannot stream; its text arrives as one piece at the end."""
    if gen_kwargs.get("num_beams", 1) > 1:
        rep = generate(model, tokenizer, [messages], stop_ids, **gen_kwargs)[0]
        if rep.text:
            on_text(rep.text)
        return rep
    started = False
    held = ""  # trailing whitespace waits for more text: a reply's last whitespace is dropped

    def _piece(text: str) -> None:
        nonlocal started, held
        if not started:
            text = text.lstrip()
            started = bool(text)
        text = held + text
        body = text.rstrip()
        held = text[len(body):]
        if body:
            on_text(body)

    return generate(model, tokenizer, [messages], stop_ids, streamer=callback_streamer(tokenizer, _piece),
                    **gen_kwargs)[0]
