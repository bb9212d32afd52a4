"""Generation shared by chat, evaluate and serve: same prompt rendering, same end-of-turn stop.

    from mothertongue.generation import generate, stream_generate, generation_kwargs

Presets: greedy, beam (num_beams + no_repeat_ngram_size from the chat config), sample
(temperature + top_p). `generate` answers a batch; `stream_generate_batch` answers a batch and
streams each reply to its own callback; `stream_generate` streams one answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from mothertongue.errors import UsageError

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
        raise UsageError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
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
             streamer=None, on_batch=None, **gen_kwargs) -> list[Reply]:
    """Answer each conversation (a list of messages ending with a user turn); `on_batch(n)` is
    called after each batch of n (a progress bar)."""
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
        if on_batch is not None:
            on_batch(len(batch))
    return replies


class _RowStreams:
    """A transformers streamer for a batched `generate`: each row's text goes to its own callback
    as it grows. Text is handed on at word boundaries (whole lines at a newline) and never with a
    half-decoded multi-byte character, like transformers' TextStreamer, which takes one row only.
    A row is finished at its first stop token; leading and trailing whitespace of a reply is
    dropped, so the pieces of a row joined equal that row's `Reply.text`."""

    def __init__(self, tokenizer, stop_ids: list[int], callbacks: list):
        self.tokenizer, self.stop, self.callbacks = tokenizer, set(stop_ids), callbacks
        n = len(callbacks)
        self.ids: list[list[int]] = [[] for _ in range(n)]
        self.sent = [0] * n  # characters of the decoded row already handed on (or dropped)
        self.done = [False] * n
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:  # the first call carries the prompts
            self.prompt_seen = True
            return
        for row, tok in enumerate(value.reshape(len(self.callbacks), -1)[:, -1].tolist()):
            if self.done[row]:
                continue
            if tok in self.stop:
                self._flush(row, final=True)
                continue
            self.ids[row].append(tok)
            self._flush(row, final=False)

    def end(self) -> None:
        for row in range(len(self.callbacks)):
            if not self.done[row]:
                self._flush(row, final=True)

    def _flush(self, row: int, final: bool) -> None:
        text = self.tokenizer.decode(self.ids[row], skip_special_tokens=True)
        if final:
            self.done[row] = True
            ready = text.rstrip()  # a reply's trailing whitespace is dropped
        elif text.endswith("\ufffd"):
            return  # a multi-byte character is not complete yet
        elif text.endswith("\n"):
            ready = text.rstrip()
        else:
            ready = text[: text.rfind(" ") + 1].rstrip()
        if self.sent[row] == 0:  # before the first visible text: leading whitespace is dropped
            self.sent[row] = len(ready) - len(ready.lstrip())
        if len(ready) > self.sent[row]:
            self.callbacks[row](ready[self.sent[row]:])
            self.sent[row] = len(ready)


def stream_generate_batch(model, tokenizer, conversations: list[list[dict]], stop_ids: list[int],
                          callbacks: list, **gen_kwargs) -> list[Reply]:
    """Answer several conversations in one batched generation, streaming each reply's text to
    its callback (None for a row nobody streams). Beam search cannot stream: its text arrives
    as one piece per row at the end."""
    callbacks = [cb or (lambda _t: None) for cb in callbacks]
    if gen_kwargs.get("num_beams", 1) > 1:
        reps = generate(model, tokenizer, conversations, stop_ids, batch_size=len(conversations), **gen_kwargs)
        for cb, rep in zip(callbacks, reps, strict=True):
            if rep.text:
                cb(rep.text)
        return reps
    streamer = _RowStreams(tokenizer, stop_ids, callbacks)
    return generate(model, tokenizer, conversations, stop_ids, batch_size=len(conversations), streamer=streamer,
                    **gen_kwargs)


def stream_generate(model, tokenizer, messages: list[dict], stop_ids: list[int], on_text,
                    **gen_kwargs) -> Reply:
    """Answer one conversation, calling `on_text(piece)` as text is produced.

    Pieces joined equal `Reply.text` (leading and trailing whitespace of the reply are dropped,
    as `generate` strips them). Beam search cannot stream; its text arrives as one piece at the end."""
    return stream_generate_batch(model, tokenizer, [messages], stop_ids, [on_text], **gen_kwargs)[0]
