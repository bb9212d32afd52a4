"""Chat templates shipped with the project, and rendering with the loss mask built alongside.

A conversation is rendered once with the template (the tokenizer's own by default, a shipped
one by name, or a user .jinja file), and for every assistant turn the text span it owns is found
by rendering the prefix *with the generation prompt*: the span is what the model must produce
after exactly the prompt it will see at chat time, end-of-turn token included. If a template's
generation prompt is not a prefix of its own training rendering, we say so instead of training
a model that rambles. Tool schemas, assistant tool calls and tool results are rendered by the
template's own tool support (`supports_tools` checks that it has one).

    python -c "from mothertongue import templates; print(templates.names())"
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mothertongue.conversation import DataError

GERMAN_PREAMBLE = "Es folgt eine Anweisung, die eine Aufgabe beschreibt. Schreibe eine passende Antwort."
ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
)


def _instruction_template(preamble: str, instr: str, resp: str) -> str:
    # One preamble (or the system prompt in its place), then Instruction/Response blocks per turn.
    return (
        "{% if messages[0]['role'] == 'system' %}{% set pre = messages[0]['content'] %}"
        "{% set loop_messages = messages[1:] %}{% else %}"
        f"{{% set pre = {preamble!r} %}}{{% set loop_messages = messages %}}{{% endif %}}"
        "{{ bos_token + pre }}"
        "{% for message in loop_messages %}"
        f"{{% if message['role'] == 'user' %}}{{{{ '\\n\\n### {instr}:\\n' + message['content'] + '\\n\\n### {resp}:\\n' }}}}"
        "{% else %}{{ message['content'] + eos_token }}{% endif %}"
        "{% endfor %}"
    )


# name -> (jinja source, end-of-turn token or None for eos_token, extra special tokens)
TEMPLATES: dict[str, tuple[str, str | None, tuple[str, ...]]] = {
    "chatml": (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content']"
        " + '<|im_end|>' + '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
        "<|im_end|>",
        ("<|im_start|>", "<|im_end|>"),
    ),
    "llama2": (
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
        "{% set sys = '<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}"
        "{% else %}{% set loop_messages = messages %}{% set sys = '' %}{% endif %}"
        "{% for message in loop_messages %}{% if message['role'] == 'user' %}"
        "{{ bos_token + '[INST] ' + (sys if loop.first else '') + message['content'] + ' [/INST]' }}"
        "{% else %}{{ ' ' + message['content'] + ' ' + eos_token }}{% endif %}{% endfor %}",
        None,
        (),
    ),
    "llama3": (
        "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role']"
        " + '<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
        "<|eot_id|>",
        ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    ),
    "mistral": (
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
        "{% set sys = messages[0]['content'] + '\\n\\n' %}{% else %}{% set loop_messages = messages %}"
        "{% set sys = '' %}{% endif %}{{ bos_token }}{% for message in loop_messages %}"
        "{% if message['role'] == 'user' %}{{ '[INST] ' + (sys if loop.first else '') + message['content'] + ' [/INST]' }}"
        "{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}",
        None,
        (),
    ),
    "gemma": (
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
        "{% set sys = messages[0]['content'] + '\\n\\n' %}{% else %}{% set loop_messages = messages %}"
        "{% set sys = '' %}{% endif %}{{ bos_token }}{% for message in loop_messages %}"
        "{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
        "{{ '<start_of_turn>' + role + '\\n' + (sys if loop.first else '') + message['content'] + '<end_of_turn>\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}",
        "<end_of_turn>",
        ("<start_of_turn>", "<end_of_turn>"),
    ),
    "zephyr": (
        "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}",
        None,
        (),
    ),
    "alpaca": (_instruction_template(ALPACA_PREAMBLE, "Instruction", "Response"), None, ()),
    "anweisung": (_instruction_template(GERMAN_PREAMBLE, "Anweisung", "Antwort"), None, ()),
}
ALIASES = {"german": "anweisung", "de_instruct": "anweisung"}

KNOWN_END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")


@dataclass
class Template:
    name: str
    source: str  # jinja
    end_of_turn: str | None  # None: the tokenizer's eos_token ends a turn
    special_tokens: tuple[str, ...]


def names() -> list[str]:
    return sorted(TEMPLATES)


def resolve(spec: str | None, tokenizer, base_dir: Path | None = None) -> Template:
    """The template a build uses: named, a .jinja file, or the tokenizer's own (spec=None)."""
    if spec is None:
        own = getattr(tokenizer, "chat_template", None)
        if not own:
            raise DataError(
                "the base model's tokenizer has no chat template; set build.template to one of "
                f"{', '.join(names())} or to a .jinja file"
            )
        eot = next((t for t in KNOWN_END_OF_TURN if t in own), None)
        return Template("tokenizer", own, eot, ())
    key = ALIASES.get(spec, spec)
    if key in TEMPLATES:
        src, eot, special = TEMPLATES[key]
        return Template(key, src, eot, special)
    path = Path(spec)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if spec.endswith(".jinja") or path.exists():
        if not path.exists():
            raise DataError(f"build.template: file not found: {path}")
        src = path.read_text(encoding="utf-8")
        eot = next((t for t in KNOWN_END_OF_TURN if t in src), None)
        return Template(path.name, src, eot, ())
    import difflib

    close = difflib.get_close_matches(spec, names(), n=2)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise DataError(f"build.template: unknown template {spec!r}; {hint}available: {', '.join(names())} or a .jinja file")


def install(template: Template, tokenizer) -> list[str]:
    """Put the template on the tokenizer and add the special tokens it needs; returns those added.
    A template that cannot render a plain exchange (syntax error, unknown filter, an error it
    raises) is a one-line error naming it."""
    missing = [t for t in template.special_tokens if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing})
    tokenizer.chat_template = template.source
    try:
        render(tokenizer, [{"role": "user", "content": "Hallo"}, {"role": "assistant", "content": "Hallo!"}])
    except TemplateRenderError as e:
        raise DataError(f"build.template: {template.name}: {e}") from None
    return missing


class TemplateMismatch(DataError):
    pass


class TemplateRenderError(DataError):
    """The chat template itself failed (syntax error, unknown filter, raise_exception, ...)."""


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = False, tools: list[dict] | None = None) -> str:
    """The template's text for messages; `tools` (schemas) go to the template's own tool support."""
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
    except TemplateError as e:
        line = f" (template line {e.lineno})" if getattr(e, "lineno", None) else ""
        raise TemplateRenderError(f"the chat template failed: {type(e).__name__}: {e}{line}") from None


# A conversation that uses every part of tool support, with names no template writes by itself.
_TOOL_PROBE = (
    [{"type": "function", "function": {"name": "probe_tool_q7", "description": "probe",
                                       "parameters": {"type": "object", "properties": {}}}}],
    [{"role": "user", "content": "u"},
     {"role": "assistant", "content": "", "tool_calls": [
         {"id": "probeq7id", "type": "function", "function": {"name": "probe_call_q7", "arguments": {"probe_arg_q7": 1}}}]},
     {"role": "tool", "content": "probe_result_q7", "tool_call_id": "probeq7id"},
     {"role": "assistant", "content": "a"}],
)


def supports_tools(tokenizer) -> bool:
    """True when the installed template renders tool schemas, assistant tool calls and tool
    results itself (checked by rendering one, not by reading the template's source)."""
    tools, messages = _TOOL_PROBE
    try:
        text = render(tokenizer, messages, tools=tools)
    except DataError:
        return False
    return all(k in text for k in ("probe_tool_q7", "probe_call_q7", "probe_arg_q7", "probe_result_q7"))


def uses_tools(messages: list[dict], tools: list[dict] | None) -> bool:
    return bool(tools) or any(m["role"] == "tool" or m.get("tool_calls") for m in messages)


def end_of_turn_token(tokenizer) -> str | None:
    """The token that ends an assistant turn under the installed template: a known end-of-turn
    token the template writes, else EOS."""
    own = getattr(tokenizer, "chat_template", None) or ""
    return next((t for t in KNOWN_END_OF_TURN if t in own), None) or tokenizer.eos_token


def _turn_span(full: str, prompt: str, messages: list[dict], i: int, eot: str | None, upto) -> tuple[int, int]:
    """(start, end) of assistant turn i in `full`: from the end of its generation prompt through
    its end-of-turn token, and no further (what a template writes after that token, such as
    ChatML's newline, is the next turn's business: chat stops at the token)."""
    start = len(prompt)
    content = (messages[i].get("content") or "").strip()
    at = full.find(content, start) if content else start
    if content and (at < 0 or full[start:at].strip()):
        raise TemplateMismatch(f"chat template: assistant turn {i} is not rendered right after its generation "
                               "prompt (the template changes the answer text or adds text before it)")
    after = at + len(content)
    limit = len(full)
    nxt = next(((m.get("content") or "").strip() for m in messages[i + 1:] if (m.get("content") or "").strip()), "")
    if nxt:
        found = full.find(nxt, after)
        limit = found if found >= 0 else limit
    e = full.find(eot, after, limit) if eot else -1
    if e >= 0:
        return start, e + len(eot)
    end = upto()  # no end-of-turn token after the answer: the turn runs to where its rendering ends
    if not full.startswith(end):
        raise TemplateMismatch(f"chat template: no end-of-turn token ({eot!r}) after assistant turn {i}, "
                               "and the conversation up to it is not a prefix of the whole; the model would not learn to stop")
    return start, len(end)


def assistant_spans(
    tokenizer, messages: list[dict], tools: list[dict] | None = None, turns: str = "all"
) -> tuple[str, list[tuple[int, int]]]:
    """Render a conversation; return its text and the character span of every assistant turn
    (`turns="last"`: of the last one only), tool calls included: the model learns to call.

    A span starts where the generation prompt for that turn ends and runs through the turn's
    end-of-turn token. Raises TemplateMismatch when the generation prompt is not a prefix of the
    training text (a model trained on it would see a different prompt at chat time)."""
    full = render(tokenizer, messages, tools=tools)
    eot = end_of_turn_token(tokenizer)
    idx = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if turns == "last":
        idx = idx[-1:]
    spans = []
    for i in idx:
        prompt = render(tokenizer, messages[:i], add_generation_prompt=True, tools=tools)
        if not full.startswith(prompt):
            raise TemplateMismatch(
                f"chat template: the generation prompt for turn {i} is not a prefix of the training text; "
                "a model trained on it would see a different prompt at chat time"
            )
        spans.append(_turn_span(full, prompt, messages, i, eot, lambda i=i: render(tokenizer, messages[: i + 1], tools=tools)))
    return full, spans


def chat_time_span(tokenizer, messages: list[dict], tools: list[dict] | None = None) -> tuple[str, tuple[int, int]]:
    """The last assistant turn as chat produces it: the chat-time prompt, then the answer as the
    template renders answers. For templates whose rendering of a prompt depends on what follows
    (Mistral v0.3 writes the system prompt only into the user turn that is last, so a
    conversation ending in an answer loses it), this is what the model sees before answering."""
    i = max(k for k, m in enumerate(messages) if m["role"] == "assistant")
    try:
        text, spans = assistant_spans(tokenizer, messages[: i + 1], tools, "last")
        return text, spans[0]
    except TemplateMismatch:
        pass
    prompt = render(tokenizer, messages[:i], add_generation_prompt=True, tools=tools)
    bare = [m for m in messages[: i + 1] if m["role"] != "system"]
    bare_prompt = render(tokenizer, bare[:-1], add_generation_prompt=True, tools=tools)
    bare_full = render(tokenizer, bare, tools=tools)
    if not bare_full.startswith(bare_prompt):
        raise TemplateMismatch(
            f"chat template: the generation prompt for turn {i} is not a prefix of the training text; "
            "a model trained on it would see a different prompt at chat time"
        )
    text = prompt + bare_full[len(bare_prompt):]
    return text, _turn_span(text, prompt, messages[: i + 1], i, end_of_turn_token(tokenizer), lambda: text)


@dataclass
class Behaviour:
    """How a chat template treats what build gives it, for the build report and `doctor`."""

    system: str  # "own turn", "first user turn", "last user turn", "dropped" or "rejected: ..."
    default_system: str | None  # a system prompt the template adds when the conversation has none
    tools: bool  # the template renders tool schemas / tool calls
    end_of_turn: str | None

    def notes(self, system_prompt: bool = False) -> list[str]:
        """What a user should know; `system_prompt`: the run gives every conversation one."""
        out = []
        if self.default_system and not system_prompt:
            out.append(f"the template adds its own system prompt when none is given ({self.default_system[:60]!r}); "
                       "set build.system_prompt to replace it with one in the target language")
        if self.system in ("first user turn", "last user turn"):
            out.append(f"the template has no system turn: the system prompt goes into the {self.system}")
        elif self.system != "own turn":
            out.append(f"system prompt: {self.system}")
        return out


def describe(tokenizer) -> Behaviour:
    """Probe the installed template with marker texts: where a system prompt lands, whether it
    injects a default one, whether it knows tools."""
    s, u1, a1, u2 = "SYSTEM-PROMPT-§1", "USER-TEXT-§2", "ANSWER-TEXT-§3", "USER-TEXT-§4"
    tools = supports_tools(tokenizer)
    eot = end_of_turn_token(tokenizer)
    user_only = render(tokenizer, [{"role": "user", "content": u1}], add_generation_prompt=True)
    try:
        with_sys = render(tokenizer, [{"role": "system", "content": s}, {"role": "user", "content": u1}],
                          add_generation_prompt=True)
        two = render(tokenizer, [{"role": "system", "content": s}, {"role": "user", "content": u1},
                                 {"role": "assistant", "content": a1}, {"role": "user", "content": u2}],
                     add_generation_prompt=True)
    except DataError as e:  # a template's raise_exception (TemplateRenderError)
        return Behaviour(f"rejected: {str(e).splitlines()[0][:120]}", None, tools, eot)
    default = None
    pre, _, post = with_sys.partition(s)
    if (s in with_sys and user_only.startswith(pre) and user_only.endswith(post)
            and len(user_only) > len(pre) + len(post)):
        default = user_only[len(pre): len(user_only) - len(post)]
    if s not in two:
        where = "dropped"
    elif two.find(s) > two.find(a1):
        where = "last user turn"
    else:
        header = user_only[: user_only.find(u1)].strip()[-6:]
        between = with_sys[with_sys.find(s) + len(s): with_sys.find(u1)]
        where = "own turn" if not header or header in between else "first user turn"
    return Behaviour(where, default, tools, eot)
