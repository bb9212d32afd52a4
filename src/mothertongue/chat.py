"""Chat with a tuned (or the base, or a merged/exported) model: a multi-turn REPL or one answer.

    mothertongue chat runs/quickstart
    mothertongue chat runs/quickstart --prompt "Nenne drei Farben." --preset beam
    echo "Nenne drei Farben." | mothertongue chat runs/quickstart     # prompts from stdin
    mothertongue chat runs/quickstart/export/merged                 # an exported model folder

    mothertongue chat runs/vision_de --image photo.jpg -p "Was siehst du?"   # a vision run

REPL commands: /reset, /system TEXT, /style NAME, /preset NAME, /image PATH (vision models: the
image goes with your next message), /save FILE, /load FILE, /help, /quit. Replies stream as they are generated and stop at the end-of-turn token; each reply is
followed by its length and speed in tokens/s.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from mothertongue.languages import you_prompt
from mothertongue.models import WHICH, load_model  # noqa: F401  (chat.load_model: older import path)
from mothertongue.prompts import style_system_prompt, with_system

HELP = ("commands: /reset  /system TEXT  /style NAME  /preset greedy|beam|sample  /image PATH  /save FILE  "
        "/load FILE  /help  /quit   (empty line does nothing)")


class ChatSession:
    def __init__(self, run_dir: Path, which: str = "tuned", preset: str | None = None,
                 system: str | None = None, max_new_tokens: int | None = None,
                 style: str | None = None, trust_remote_code: bool = False):
        # trust_remote_code is the user's flag only; nothing in the run folder can turn it on.
        self.model, self.tokenizer, self.stop_ids, info = load_model(Path(run_dir), which, trust_remote_code,
                                                                     vision=True)
        self.processor = info.processor  # set for a vision-language model
        self.pending_images: list[str] = []  # attached with --image or /image, sent with the next message
        self.history_images: list[str] = []  # the images of the conversation so far, in order
        self.recipe = info.recipe
        self.chat_cfg = self.recipe.chat if self.recipe else None
        self.language = info.language
        self.default_system = system if system is not None else info.system_prompt
        self.system = self.default_system
        self.style = style
        self.custom_styles = info.styles
        self.max_new_tokens = max_new_tokens or (self.chat_cfg.max_new_tokens if self.chat_cfg else 256)
        self.set_preset(preset or (self.chat_cfg.preset if self.chat_cfg else "greedy"))
        self.history: list[dict] = []

    def set_preset(self, preset: str) -> None:
        from mothertongue.generation import generation_kwargs

        self.gen_kwargs = generation_kwargs(preset, self.chat_cfg, self.max_new_tokens)
        self.preset = preset

    @property
    def system_prompt(self) -> str | None:
        return style_system_prompt(self.language, self.style, self.system, self.custom_styles)

    def messages(self, user: str) -> list[dict]:
        return with_system([*self.history, {"role": "user", "content": user}], self.system_prompt)

    def attach_image(self, path: str) -> None:
        """Send the image at `path` with the next message; a missing, broken or too large image,
        or a text-only model, is a one-line DataError now."""
        from mothertongue.conversation import DataError
        from mothertongue.vision.images import open_image

        if self.processor is None:
            raise DataError("this model takes no images; train a vision model (a `vision:` section and "
                            "`mothertongue vision RECIPE`) and chat with its run")
        open_image(path, *self._image_limits())
        self.pending_images.append(str(path))

    def _image_limits(self) -> tuple[int, int]:
        v = self.recipe.vision if self.recipe else None
        return (v.max_image_pixels, v.max_image_bytes) if v else (40_000_000, 20_000_000)

    def _vision_reply(self, user: str):
        from mothertongue.vision.images import open_image
        from mothertongue.vision.infer import answer

        mark = "".join(f"{self.processor.image_token}\n" for _ in self.pending_images)
        user = mark + user
        paths = self.history_images + self.pending_images
        images = [open_image(p, *self._image_limits()) for p in paths]
        rep = answer(self.model, self.processor, self.messages(user), images, self.stop_ids, **self.gen_kwargs)
        self.history_images, self.pending_images = paths, []
        return user, rep

    def reply(self, user: str, stream: bool = False, on_text=None):
        """Answer `user` in the running conversation. With `stream`, pieces of text go to
        `on_text` (default: stdout) as they are generated; `Reply.streamed` says so."""
        from mothertongue.generation import generate, stream_generate

        t0 = time.perf_counter()
        if self.processor is not None:  # one piece at the end: the vision path does not stream
            user, rep = self._vision_reply(user)
            if stream:
                (on_text or (lambda t: (sys.stdout.write(t), sys.stdout.flush())))(rep.text)
        elif stream:
            sink = on_text or (lambda t: (sys.stdout.write(t), sys.stdout.flush()))
            rep = stream_generate(self.model, self.tokenizer, self.messages(user), self.stop_ids, sink,
                                  **self.gen_kwargs)
        else:
            rep = generate(self.model, self.tokenizer, [self.messages(user)], self.stop_ids,
                           **self.gen_kwargs)[0]
        rep.seconds = time.perf_counter() - t0
        rep.streamed = stream
        self.history += [{"role": "user", "content": user}, {"role": "assistant", "content": rep.text}]
        return rep

    def reset(self) -> None:
        self.history = []
        self.history_images, self.pending_images = [], []

    def save(self, path: Path) -> None:
        data = {"system": self.system, "style": self.style, "preset": self.preset, "messages": self.history}
        if self.history_images:
            data["images"] = self.history_images
        Path(path).write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    def load(self, path: Path) -> None:
        """Restore a conversation written by `save` (or any {"messages": [...]} JSON file)."""
        from mothertongue.conversation import DataError

        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{path}: file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: not valid JSON ({e})") from None
        msgs = data.get("messages") if isinstance(data, dict) else None
        if not isinstance(msgs, list):
            raise DataError(f"{path}: field messages: must be a list of {{role, content}}")
        for i, m in enumerate(msgs):
            if not (isinstance(m, dict) and m.get("role") in ("user", "assistant")
                    and isinstance(m.get("content"), str)):
                raise DataError(f"{path}: messages[{i}]: must be {{role: user|assistant, content: text}}")
        self.history = [{"role": m["role"], "content": m["content"]} for m in msgs]
        self.history_images = [str(p) for p in data.get("images") or []]
        if "system" in data:
            self.system = data["system"]
        if "style" in data:
            self.style = data["style"]


def _command(session: ChatSession, line: str, say) -> bool:
    """Run one /command; False means quit."""
    from mothertongue.conversation import DataError

    cmd, _, arg = line.partition(" ")
    arg = arg.strip()
    if cmd in ("/quit", "/exit"):
        return False
    if cmd == "/reset":
        session.reset()
        say("(conversation reset)")
    elif cmd == "/system":
        session.system = arg or None
        say(f"(system prompt: {session.system or 'none'})")
    elif cmd == "/style":
        session.style = arg or None
        say(f"(style: {session.style or 'none'}; system prompt: {session.system_prompt or 'none'})")
    elif cmd == "/preset":
        try:
            session.set_preset(arg)
            say(f"(preset: {arg})")
        except ValueError as e:
            say(f"error: {e}")
    elif cmd in ("/save", "/load"):
        if not arg:
            say(f"usage: {cmd} FILE")
        else:
            try:
                if cmd == "/save":
                    session.save(Path(arg))
                    say(f"(saved {len(session.history) // 2} turns to {arg})")
                else:
                    session.load(Path(arg))
                    say(f"(loaded {len(session.history) // 2} turns from {arg})")
            except (DataError, OSError) as e:
                say(f"error: {e}")
    elif cmd == "/image":
        if not arg:
            say("usage: /image PATH")
        else:
            try:
                session.attach_image(arg)
                say(f"(image {arg} goes with your next message)")
            except DataError as e:
                say(f"error: {e}")
    elif cmd == "/help":
        say(HELP)
    else:
        say(f"unknown command {cmd}; {HELP}")
    return True


def repl(session: ChatSession, inp=sys.stdin, out=sys.stdout) -> None:
    """The REPL. On a terminal it shows prompts, streams replies and prints tokens/s; with
    piped input each line is a turn (commands work) and only the replies are printed."""
    interactive = inp.isatty()

    def say(msg: str) -> None:
        print(msg, file=out if interactive else sys.stderr, flush=True)

    if interactive:
        say(f"mothertongue chat — {HELP}")
    while True:
        if interactive and inp is sys.stdin:
            try:
                import readline  # noqa: F401  (line editing and history for input())
            except ImportError:
                pass
            try:
                line = input(you_prompt(session.language))
            except EOFError:
                break
        else:
            if interactive:
                out.write(you_prompt(session.language))
                out.flush()
            line = inp.readline()
            if not line:
                break
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            if not _command(session, line, say):
                break
            continue
        if interactive:
            out.write("bot> ")
            out.flush()

            def show(t: str) -> None:
                out.write(t)
                out.flush()

            rep = session.reply(line, stream=True, on_text=show)
            tps = rep.new_tokens / rep.seconds if rep.seconds > 0 else 0.0
            tail = "" if rep.ended else "  [cut at max_new_tokens]"
            print(f"\n({rep.new_tokens} tokens, {tps:.0f} tokens/s){tail}", file=out, flush=True)
        else:
            rep = session.reply(line)
            print(rep.text, file=out, flush=True)
