"""Name -> lazily imported object, with helpful errors for unknown names, and plug-ins.

    ENGINES = Registry("translation engine", entry_point_group="mothertongue.engines")
    ENGINES.register("ctranslate2", "mothertongue.engines.ct2:CTranslate2Engine", "CTranslate2 (default)")
    engine_cls = ENGINES.get("ctranslate2")   # imported only now

Built-ins and plug-ins go through the same door, `register(name, "module:attribute", doc)`:
built-ins call it in the package, and an installed distribution calls it by declaring an entry
point in the registry's group, e.g. in its pyproject.toml

    [project.entry-points."mothertongue.engines"]
    deepl = "mothertongue_deepl:DeepLEngine"

Entry points are read the first time a registry is asked for names or an object, and only their
target strings are kept: a plug-in's module is imported when its name is used, like a built-in's.
A plug-in cannot replace a built-in of the same name (it is ignored, so a stray package cannot
change what `ctranslate2` means).
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import Any

from mothertongue.errors import UnknownName

__all__ = ["Registry", "UnknownName"]


class Registry:
    def __init__(self, kind: str, entry_point_group: str | None = None):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._targets: dict[str, str] = {}
        self._docs: dict[str, str] = {}
        self._plugins_loaded = entry_point_group is None

    def register(self, name: str, target: str, doc: str = "") -> None:
        if ":" not in target:
            raise ValueError(f"{self.kind} {name!r}: target must be 'module:attribute', got {target!r}")
        self._targets[name] = target
        self._docs[name] = doc

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.entry_point_group):
            if ep.name in self._targets:
                continue
            dist = getattr(ep, "dist", None)
            origin = f"plug-in from {dist.name}" if dist is not None else "plug-in"
            self.register(ep.name, ep.value, origin)

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._targets)

    def doc(self, name: str) -> str:
        self._load_plugins()
        return self._docs.get(name, "")

    def target(self, name: str) -> str:
        """The 'module:attribute' string a name points at (nothing imported)."""
        self._load_plugins()
        self._check(name)
        return self._targets[name]

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return name in self._targets

    def _check(self, name: str) -> None:
        if name not in self._targets:
            close = difflib.get_close_matches(name, self._targets, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise UnknownName(f"unknown {self.kind} {name!r}; {hint}available: {', '.join(self.names())}")

    def get(self, name: str) -> Any:
        self._load_plugins()
        self._check(name)
        module, attr = self._targets[name].split(":")
        try:
            obj = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as e:
            if self._docs.get(name, "").startswith("plug-in"):
                raise UnknownName(f"{self.kind} {name!r} ({self._docs[name]}) cannot be loaded from "
                                  f"{self._targets[name]}: {e}") from None
            raise
        return obj
