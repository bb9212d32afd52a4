"""Plug-ins come in through installed distributions' entry points, like built-ins through register()."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from helpers import mt
from mothertongue.errors import MothertongueError, UnknownName
from mothertongue.registry import Registry


def install_dist(site: Path, dist: str, module: str, code: str, entry_points: dict[str, dict[str, str]]) -> None:
    """A real installed distribution on `site`: a module plus a dist-info with entry_points.txt."""
    (site / f"{module}.py").write_text(code, encoding="utf-8")
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n", encoding="utf-8")
    eps = "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in names.items()) + "\n"
                  for group, names in entry_points.items())
    (info / "entry_points.txt").write_text(eps, encoding="utf-8")


def test_plugin_registers_lazily_and_cannot_replace_a_builtin(tmp_path, monkeypatch):
    install_dist(tmp_path, "mt-plugin-demo", "mt_plugin_demo", "IMPORTED = True\nclass Thing:\n    pass\n",
                 {"mothertongue.test_things": {"demo": "mt_plugin_demo:Thing", "builtin": "mt_plugin_demo:Thing",
                                               "broken": "mt_plugin_demo:Missing"}})
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("thing", entry_point_group="mothertongue.test_things")
    reg.register("builtin", "json:JSONDecoder", "the built-in")
    assert reg.names() == ["broken", "builtin", "demo"]
    assert "mt_plugin_demo" not in sys.modules  # listed, not imported
    assert reg.doc("demo") == "plug-in from mt-plugin-demo"
    assert reg.get("demo").__name__ == "Thing" and "mt_plugin_demo" in sys.modules
    assert reg.get("builtin") is json.JSONDecoder
    with pytest.raises(UnknownName, match="broken.*mt-plugin-demo.*cannot be loaded") as e:
        reg.get("broken")
    assert isinstance(e.value, MothertongueError)
    with pytest.raises(UnknownName, match="unknown thing 'dem'; did you mean demo"):
        reg.get("dem")


def test_plugin_format_reads_data_through_ingest(tmp_path):
    """A third-party format, installed as a distribution, is listed and used by the ingest stage."""
    site = tmp_path / "site"
    site.mkdir()
    code = (
        "from mothertongue.formats.openai import OpenAIAdapter\n\n"
        "class ChatLogAdapter(OpenAIAdapter):\n"
        '    """A chat log format from a plug-in."""\n'
        '    name = "chatlog"\n'
    )
    install_dist(site, "mt-chatlog", "mt_chatlog", code,
                 {"mothertongue.formats": {"chatlog": "mt_chatlog:ChatLogAdapter"}})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    listed = mt("ls", "formats", env=env)
    assert listed.returncode == 0 and "chatlog" in listed.stdout and "plug-in from mt-chatlog" in listed.stdout
    rows = [{"messages": [{"role": "user", "content": f"Frage {i}?"}, {"role": "assistant", "content": f"Antwort {i}."}]}
            for i in range(3)]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"run_dir: {tmp_path / 'run'}\ningest:\n  sources:\n    - {{path: log.jsonl, format: chatlog}}\n")
    res = mt("ingest", recipe, env=env)
    assert res.returncode == 0, res.stderr
    out = (tmp_path / "run" / "ingest" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["messages"][1]["content"] for line in out] == ["Antwort 0.", "Antwort 1.", "Antwort 2."]
