"""OpenAssistant (OASST1, OASST2) message trees -> threads and preference pairs.

    mothertongue ingest recipe.yaml      # sources: [{path: 2023-04-12_oasst_ready.trees.jsonl, format: oasst}]

Three shapes found in the wild are read and detected: flat message rows (the Hugging Face
`oasst1`/`oasst2` parquet/JSONL: `message_id`, `parent_id`, `text`, `role` prompter/assistant,
`lang`, `rank`, `deleted`, `review_result`, `synthetic`, ...), nested tree exports
(`message_tree_id`, `prompt` with recursive `replies`), and nested message exports (one root
message per line with recursive `replies`, no wrapper). Keys may be missing or null; a `rank`
given as a digit string ("1") is read as that number, any other non-number rank is a bad record.
Source (flat rows of one small tree)::

    {"message_id": "6ab24d72-...", "parent_id": null, "role": "prompter", "lang": "en",
     "text": "Can you write a short introduction about the relevance of the term \\"monopsony\\" ...",
     "rank": null, "deleted": false, "review_result": true, "synthetic": false, ...}
    {"message_id": "c8e83833-...", "parent_id": "6ab24d72-...", "role": "assistant", "lang": "en",
     "text": "\\"Monopsony\\" refers to a market structure where there is only one buyer ...", "rank": 0, ...}
    {"message_id": "6708c47f-...", "parent_id": "6ab24d72-...", "role": "assistant", "lang": "en",
     "text": "Monopsony is a market structure in which there is a single buyer ...", "rank": 1, ...}

becomes the thread (best-ranked answer at every step)::

    Conversation(id="oasst-c8e83833-...", source="oasst", lang="en",
                 meta={"file": ..., "line": 1, "message_tree_id": "6ab24d72-...", "message_ids": [...]},
                 messages=[Message("user", "Can you write a short introduction ...", lang="en"),
                           Message("assistant", "\\"Monopsony\\" refers to ...", lang="en")])

and the preference pair (chosen = rank 0, rejected = each lower-ranked assistant sibling)::

    PreferencePair(prompt=[Message("user", "Can you write ...")], chosen="\\"Monopsony\\" refers to ...",
                   rejected="Monopsony is a market structure ...")

Options: `threads` best (default) | all (every root-to-leaf path) | topk (the `k` best branches
at every step); `synthetic` keep (default) | drop; `pairs` true (default) | false; `langs`: keep
only these languages. Threads end on an assistant turn. Deleted messages, failed reviews,
(dropped) synthetic messages, the messages below them, orphans (a `parent_id` that is not in
the data) and parent cycles are counted by reason; so are messages on no selected thread.
Every message counts as a record: it is converted (on a thread, in a pair's prompt, chosen or
rejected; counted once) or skipped with its reason. Time is linear in the number of messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Literal

from pydantic import Field

from mothertongue.conversation import Conversation, Message, PreferencePair
from mothertongue.formats.base import Adapter, FormatOptions, IngestReport, Record, clean, loc_meta

ROLE = {"prompter": "user", "assistant": "assistant", "user": "user"}
_CUT = object()  # the parent of a nested reply whose parent could not be read


class _Msg:
    __slots__ = ("id", "parent", "role", "text", "lang", "rank", "loc", "tree", "order", "flag")

    def __init__(self, id, parent, role, text, lang, rank, loc, tree, order, flag):
        self.id, self.parent, self.role, self.text, self.lang = id, parent, role, text, lang
        self.rank, self.loc, self.tree, self.order, self.flag = rank, loc, tree, order, flag


class OasstOptions(FormatOptions):
    threads: Literal["best", "all", "topk"] = Field("best", description="Which root-to-leaf paths become threads.")
    k: int = Field(2, gt=0, description="Branches kept at every step with threads: topk.")
    synthetic: Literal["keep", "drop"] = Field("keep", description="Keep or drop synthetic messages.")
    pairs: bool = Field(True, description="Make preference pairs from ranked sibling answers.")
    langs: list[str] | str | None = Field(None, description="Keep only messages in these languages.")


def _id_ok(v: Any) -> bool:
    return isinstance(v, (str, int)) and not isinstance(v, bool)


def _rank(v: Any) -> float | None | bool:
    """A rank as a number: None when absent, a digit string as its number, False when unusable."""
    if v is None:
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)
    return False


class OasstAdapter(Adapter):
    name = "oasst"
    Options = OasstOptions
    required = ("message_id", "text", "role")
    collects = True

    def __init__(self, source, options=None, where: str = "source"):
        super().__init__(source, options, where)
        self.mode = self.opts.threads
        self.k = self.opts.k
        langs = self.opts.langs
        self.langs = set([langs] if isinstance(langs, str) else langs) if langs else None

    @classmethod
    def sniff(cls, path, sample) -> str | None:
        if not sample or not all(isinstance(r, dict) for r in sample):
            return None
        if all(isinstance(r.get("prompt"), dict) and "message_tree_id" in r for r in sample[:5]):
            return "records are message trees (message_tree_id, prompt with replies)"
        if all("message_id" in r and r.get("role") == "prompter" and isinstance(r.get("replies"), list)
               for r in sample[:5]):
            return "records are root messages with nested replies (message_id, role, replies)"
        if all("message_id" in r and r.get("role") in ("prompter", "assistant") for r in sample[:5]):
            return "records are messages (message_id, parent_id, role prompter/assistant)"
        return None

    def check_format(self, loc: str, obj: Any) -> None:
        self._checked_format = True
        if isinstance(obj, dict) and (isinstance(obj.get("prompt"), dict) or "message_id" in obj):
            return
        super().check_format(loc, obj)

    # ------------------------------------------------------------------ collect messages
    def _add(self, msgs: dict, d: Any, loc: str, parent: Any, tree: Any, report: IngestReport) -> bool:
        """Index one message; False (after reporting it) when it cannot be placed in a tree."""
        if not isinstance(d, dict):
            report.bad(loc, "not an object", f"expected a message object, got {type(d).__name__}")
            return False
        mid = d.get("message_id")
        if mid is None or mid == "":
            report.bad(loc, "missing field message_id", "field 'message_id' is missing")
            return False
        if not _id_ok(mid):
            report.bad(loc, "bad field message_id", f"field 'message_id' is {type(mid).__name__}, expected a string")
            return False
        where = f"{loc} message {mid}" if " message " not in loc else loc
        if mid in msgs:
            report.bad(where, "duplicate message_id", f"field 'message_id' {mid} occurs twice")
            return False
        if parent is not None and not _id_ok(parent):
            report.bad(where, "bad field parent_id", f"field 'parent_id' is {type(parent).__name__}, expected a string")
            return False
        role = ROLE.get(d["role"]) if isinstance(d.get("role"), str) else None
        if role is None:
            report.bad(where, "bad field role", f"field 'role' is {d.get('role')!r}, expected prompter or assistant")
            return False
        flag = None
        if d.get("deleted"):
            flag = "deleted"
        elif d.get("review_result") is False:
            flag = "failed review"
        elif d.get("synthetic") and self.opts.synthetic == "drop":
            flag = "synthetic"
        elif self.langs is not None and (lang if isinstance(lang := d.get("lang"), str) else None) not in self.langs:
            flag = "language not selected"
        text = d.get("text")
        if flag is None and (not isinstance(text, str) or not text.strip()):
            report.bad(where, "empty text", "field 'text' is missing or empty")
            flag = "bad"
        rank = _rank(d.get("rank"))
        if rank is False:
            if flag is None:
                report.bad(where, "bad field rank", f"field 'rank' is {d.get('rank')!r}, expected a number")
                flag = "bad"
            rank = None
        lang = d.get("lang")
        msgs[mid] = _Msg(mid, parent, role, clean(text) if isinstance(text, str) else "",
                         lang if isinstance(lang, str) else None,
                         rank, where, tree or d.get("message_tree_id"), len(msgs), flag)
        return True

    def read_rows(self, rows: Iterable[tuple[str, Any]], report: IngestReport) -> Iterator[Record]:
        msgs: dict[Any, _Msg] = {}
        for loc, obj in rows:
            if not self._checked_format:
                self.check_format(loc, obj)
            wrapped = isinstance(obj, dict) and isinstance(obj.get("prompt"), dict)
            if wrapped or isinstance(obj, dict) and isinstance(obj.get("replies"), list):
                # nested export (a tree, or a bare root message): walk replies with an explicit
                # stack (trees can be deep)
                tree = obj.get("message_tree_id") if wrapped else None
                stack = [(obj["prompt"] if wrapped else obj, None)]
                first = True
                while stack:
                    node, parent = stack.pop()
                    if not first:
                        report.read += 1  # the reader counted the line once; every message counts
                    first = False
                    mid = node.get("message_id") if isinstance(node, dict) else None
                    where = f"{loc} message {mid}"
                    if parent is _CUT:
                        report.skip(where, "below a bad message")
                        added = False
                    else:
                        added = self._add(msgs, node, where, parent, tree, report)
                    replies = node.get("replies") if isinstance(node, dict) else None
                    if isinstance(replies, list):
                        stack.extend((child, mid if added else _CUT) for child in reversed(replies))
                    elif replies is not None:
                        report.notes.append(f"{where}: field 'replies' is not a list; ignored")
            else:
                self._add(msgs, obj, loc, obj.get("parent_id") if isinstance(obj, dict) else None, None, report)
        yield from self._build(msgs, report)

    # ------------------------------------------------------------------ trees -> threads
    def _build(self, msgs: dict[Any, _Msg], report: IngestReport) -> Iterator[Record]:
        children: dict[Any, list[_Msg]] = {}
        roots: list[_Msg] = []
        orphans: list[_Msg] = []
        for m in msgs.values():  # the one children index: O(n)
            if m.parent is None:
                roots.append(m)
            elif m.parent in msgs:
                children.setdefault(m.parent, []).append(m)
            else:
                orphans.append(m)
                report.bad(m.loc, "orphan", f"field 'parent_id': parent {m.parent} is not in the data")
        alive: list[_Msg] = []  # parents before children
        seen: set = {m.id for m in orphans}
        stack: list[tuple[_Msg, str | None]] = [
            (c, "below an orphan") for m in orphans for c in children.get(m.id, ())]
        stack += [(m, None) for m in reversed(roots)]
        while stack:
            m, cut = stack.pop()
            seen.add(m.id)
            if cut is None and m.flag is None:
                parent = msgs.get(m.parent)
                if parent is None and m.role != "user":
                    report.bad(m.loc, "thread starts with assistant", "field 'role': a root message must be a prompter")
                    cut = "below a bad message"
                elif parent is not None and parent.role == m.role:
                    report.bad(m.loc, "roles do not alternate", f"field 'role': {m.role} replies to {parent.role}")
                    cut = "below a bad message"
                else:
                    alive.append(m)
            elif cut is None:
                if m.flag != "bad":
                    report.skip(m.loc, m.flag)
                cut = f"below a {m.flag} message" if m.flag != "bad" else "below a bad message"
            else:
                report.skip(m.loc, cut)
            kids = children.get(m.id, ())
            stack.extend((c, cut) for c in reversed(kids))
        for m in msgs.values():
            if m.id not in seen:
                report.bad(m.loc, "cycle", f"field 'parent_id': message {m.id} is in a parent_id cycle")

        alive_ids = {m.id for m in alive}
        viable: dict[Any, bool] = {}
        for m in reversed(alive):  # children before parents
            viable[m.id] = m.role == "assistant" or any(
                viable.get(c.id, False) for c in children.get(m.id, ()) if c.id in alive_ids)

        def ranked(m: _Msg) -> list[_Msg]:
            kids = [c for c in children.get(m.id, ()) if viable.get(c.id)]
            kids.sort(key=lambda c: (c.rank is None, c.rank if c.rank is not None else 0, c.order))
            return kids

        used: set = set()
        parent_of = {m.id: msgs.get(m.parent) for m in alive}
        for root in (m for m in alive if m.parent is None):
            if not viable[root.id]:
                continue
            width = 1 if self.mode == "best" else (self.k if self.mode == "topk" else None)
            # DFS over selected branches; a thread is emitted where the path cannot continue
            path_stack: list[tuple[_Msg, int]] = [(root, 0)]
            path: list[_Msg] = []
            while path_stack:
                m, depth = path_stack.pop()
                del path[depth:]
                path.append(m)
                kids = ranked(m)[:width]
                if kids:
                    path_stack.extend((c, depth + 1) for c in reversed(kids))
                else:
                    used.update(x.id for x in path)
                    yield self._thread(path, root)
        if self.opts.pairs:
            for m in alive:
                if m.role != "user":
                    continue
                answers = [c for c in children.get(m.id, ()) if c.id in alive_ids and c.rank is not None]
                if len(answers) < 2:
                    continue
                answers.sort(key=lambda c: (c.rank, c.order))
                best = answers[0]
                prompt: list[_Msg] = []
                p: _Msg | None = m
                while p is not None:
                    prompt.append(p)
                    p = parent_of.get(p.id)
                prompt.reverse()
                prompt_msgs = [Message(x.role, x.text, x.lang) for x in prompt]
                for worse in answers[1:]:
                    if worse.rank == best.rank:
                        continue
                    origin = (*(x.id for x in prompt), best.id, worse.id)
                    used.update(origin)
                    yield PreferencePair(
                        id=f"{self.src_name}-{best.id}-{worse.id}",
                        prompt=list(prompt_msgs),
                        chosen=best.text, rejected=worse.text, lang=prompt[0].lang or self.opts.lang,
                        source=self.src_name,
                        meta={**loc_meta(m.loc.split(" message ")[0]), "message_tree_id": prompt[0].tree,
                              "chosen_id": best.id, "rejected_id": worse.id,
                              "ranks": [best.rank, worse.rank]},
                        origin=origin,
                    )
        for m in alive:
            if m.id not in used:
                reason = (f"not on a selected thread (threads={self.mode})" if viable[m.id]
                          else "prompter message without an answer")
                report.skip(m.loc, reason)

    def _thread(self, path: list[_Msg], root: _Msg) -> Conversation:
        leaf = path[-1]
        return Conversation(
            id=f"{self.src_name}-{leaf.id}",
            messages=[Message(m.role, m.text, m.lang) for m in path],
            lang=root.lang or self.opts.lang,
            source=self.src_name,
            meta={**loc_meta(root.loc.split(" message ")[0]), "message_tree_id": root.tree or root.id,
                  "message_ids": [m.id for m in path]},
            origin=tuple(m.id for m in path),
        )
