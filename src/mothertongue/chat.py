"""Chat with a tuned (or the base) model: a multi-turn REPL, or one answer with --prompt.

    mothertongue chat runs/quickstart
    mothertongue chat runs/quickstart --prompt "Nenne drei Farben." --preset beam

REPL commands: /reset (forget the conversation), /system TEXT (set the system prompt),
/quit. Replies stream as they are generated and stop at the end-of-turn token.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

HELP = "commands: /reset  /system TEXT  /quit   (empty line does nothing)"


class ChatSession:
    def __init__(self, run_dir: Path, which: str = "tuned", preset: str | None = None,
                 system: str | None = None, max_new_tokens: int | None = None):
        from mothertongue.config import load_recipe
        from mothertongue.generation import generation_kwargs
        from mothertongue.models import load_for_inference, read_template_info

        resolved = Path(run_dir) / "recipe.resolved.yaml"
        self.recipe = load_recipe(resolved) if resolved.exists() else None
        chat_cfg = self.recipe.chat if self.recipe else None
        self.model, self.tokenizer, self.stop_ids = load_for_inference(Path(run_dir), which)
        info = read_template_info(Path(run_dir) / "train" / "model")
        self.default_system = system if system is not None else info.get("system_prompt")
        self.system = self.default_system
        preset = preset or (chat_cfg.preset if chat_cfg else "greedy")
        mnt = max_new_tokens or (chat_cfg.max_new_tokens if chat_cfg else 256)
        self.gen_kwargs = generation_kwargs(preset, chat_cfg, mnt)
        self.history: list[dict] = []

    def messages(self, user: str) -> list[dict]:
        sys_msg = [{"role": "system", "content": self.system}] if self.system else []
        return sys_msg + self.history + [{"role": "user", "content": user}]

    def reply(self, user: str, stream: bool = False):
        from mothertongue.generation import generate

        streamer = None
        if stream and self.gen_kwargs.get("num_beams", 1) == 1:
            from transformers import TextStreamer

            streamer = TextStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        t0 = time.perf_counter()
        rep = generate(self.model, self.tokenizer, [self.messages(user)], self.stop_ids,
                       streamer=streamer, **self.gen_kwargs)[0]
        rep.seconds = time.perf_counter() - t0
        rep.streamed = streamer is not None
        self.history += [{"role": "user", "content": user}, {"role": "assistant", "content": rep.text}]
        return rep

    def reset(self) -> None:
        self.history = []


def repl(session: ChatSession, inp=sys.stdin, out=sys.stdout) -> None:
    interactive = inp.isatty()
    print(f"mothertongue chat — {HELP}", file=out, flush=True)
    while True:
        if interactive:
            try:
                line = input("du> ")
            except EOFError:
                break
        else:
            out.write("du> ")
            out.flush()
            line = inp.readline()
            if not line:
                break
        line = line.strip()
        if not line:
            continue
        if line in ("/quit", "/exit"):
            break
        if line == "/reset":
            session.reset()
            print("(conversation reset)", file=out, flush=True)
            continue
        if line.startswith("/system"):
            session.system = line[len("/system"):].strip() or None
            print(f"(system prompt: {session.system or 'none'})", file=out, flush=True)
            continue
        if line.startswith("/"):
            print(f"unknown command {line.split()[0]}; {HELP}", file=out, flush=True)
            continue
        out.write("bot> ")
        out.flush()
        rep = session.reply(line, stream=True)
        if not rep.streamed:
            out.write(rep.text)
        tps = rep.new_tokens / rep.seconds if rep.seconds > 0 else 0.0
        tail = "" if rep.ended else "  [cut at max_new_tokens]"
        print(f"\n({rep.new_tokens} tokens, {tps:.0f} tokens/s){tail}", file=out, flush=True)
