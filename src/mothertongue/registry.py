"""Name -> lazily imported object, with helpful errors for unknown names.

Built-ins register through the same door as plug-ins:

    ENGINES = Registry("translation engine")
    ENGINES.register("ctranslate2", "mothertongue.engines.ctranslate2:CTranslate2Engine")
    engine_cls = ENGINES.get("ctranslate2")   # imported only now
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any


class UnknownName(KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._targets: dict[str, str] = {}
        self._docs: dict[str, str] = {}

    def register(self, name: str, target: str, doc: str = "") -> None:
        if ":" not in target:
            raise ValueError(f"{self.kind} {name!r}: target must be 'module:attribute', got {target!r}")
        self._targets[name] = target
        self._docs[name] = doc

    def names(self) -> list[str]:
        return sorted(self._targets)

    def doc(self, name: str) -> str:
        return self._docs.get(name, "")

    def __contains__(self, name: str) -> bool:
        return name in self._targets

    def get(self, name: str) -> Any:
        if name not in self._targets:
            close = difflib.get_close_matches(name, self._targets, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise UnknownName(f"unknown {self.kind} {name!r}; {hint}available: {', '.join(self.names())}")
        module, attr = self._targets[name].split(":")
        return getattr(importlib.import_module(module), attr)
