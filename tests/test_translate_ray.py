"""`translate.executor: ray` on a local Ray cluster of a head and two worker nodes (Ray's own
cluster utilities), against the same run with `executor: local`.

    python -m pytest -q tests/test_translate_ray.py

The engine is the remote engine talking to a stub OpenAI-compatible server on loopback (answers
`[de] <segment>`, a few ms each), so the run is long enough to kill a worker in the middle.
Outputs must be byte-identical to the local run, with every segment in the memory exactly once,
also when one worker process is killed with SIGKILL mid-run. Ray missing is a one-line error.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import run_recipe
from mothertongue.errors import StageError
from stub_openai import Stub

WORDS = (
    "cat dog house tree water bread milk apple book table chair window door sun moon star".split()
)
SENTENCES = [
    f"The {a} sees the {b} near the {c}."
    for a in WORDS[:8]
    for b in WORDS[8:]
    for c in ("road", "lake")
]


def write_recipe(tmp: Path, url: str, executor: str) -> Path:
    tmp.mkdir(exist_ok=True)
    data = tmp.parent / "d.txt"  # one file for every run: its path is in the records' meta
    data.write_text("".join(f"{s}#{s} Yes.\n" for s in SENTENCES), encoding="utf-8")
    p = tmp / "r.yaml"
    p.write_text(
        f"run_dir: {tmp / 'run'}\nlanguage: de\n"
        f"ingest:\n  sources:\n    - {{path: {data}, format: text, options: {{lang: en}}}}\n"
        "translate:\n  enabled: true\n  engine: remote\n  model: tiny-mt\n  progress: false\n  quality_gate: false\n"
        f"  batch_tokens: 64\n  executor: {executor}\n  ray: {{workers: 2, num_cpus: 1}}\n"
        f"  options: {{url: '{url}', concurrency: 2}}\n",
        encoding="utf-8",
    )
    return p


def outputs(run: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted((run / "translate").glob("*.jsonl"))}


def memory_rows(run: Path) -> list[tuple]:
    with sqlite3.connect(run / "translate-memory.sqlite") as c:
        return c.execute("SELECT source, target FROM tm ORDER BY source").fetchall()


def test_ray_missing_is_one_line(tmp_path, monkeypatch):
    stub = Stub()
    try:
        recipe = write_recipe(tmp_path, stub.url, "ray")
        run_recipe(recipe, [], stages=["ingest"])
        monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
        with pytest.raises(
            StageError,
            match=r'^translate.executor: ray needs Ray.*pip install "mothertongue\[ray\]"',
        ) as e:
            run_recipe(recipe, [], stages=["translate"])
        assert "\n" not in str(e.value) and stub.requests == 0
        assert not (tmp_path / "run" / "translate").exists()
    finally:
        stub.close()


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(2):
        c.add_node(num_cpus=1)
    ray.init(address=c.address, log_to_driver=False)
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()


def _translator_pids() -> list[int]:
    import psutil

    pids = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if cmd.startswith("ray::TranslatorActor"):
            pids.append(p.info["pid"])
    return pids


@pytest.mark.slow
def test_ray_output_is_byte_identical_to_local_also_after_a_worker_is_killed(cluster, tmp_path):
    stub = Stub(delay=0.01)
    try:
        local = write_recipe(tmp_path / "local", stub.url, "local")
        run_recipe(local, [], stages=["ingest", "translate"])
        want, want_rows = (
            outputs(tmp_path / "local" / "run"),
            memory_rows(tmp_path / "local" / "run"),
        )
        assert len(want_rows) == len(SENTENCES) + 1 and want["train.jsonl"]  # + "Yes."

        recipe = write_recipe(tmp_path / "ray", stub.url, "ray")
        run_recipe(recipe, [], stages=["ingest", "translate"])
        assert outputs(tmp_path / "ray" / "run") == want
        assert memory_rows(tmp_path / "ray" / "run") == want_rows
        report = json.loads((tmp_path / "ray" / "run" / "translate" / "report.json").read_text())
        assert report["segments"]["translated"] == len(want_rows)

        # Again from scratch, killing one worker process once a fifth of the segments are done.
        recipe = write_recipe(tmp_path / "kill", stub.url, "ray")
        run_recipe(recipe, [], stages=["ingest"])
        killed: list[int] = []

        def kill_one() -> None:
            start = stub.requests
            deadline = time.time() + 120
            while time.time() < deadline and stub.requests < start + len(want_rows) // 5:
                time.sleep(0.01)
            pids = _translator_pids()
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

        killer = threading.Thread(target=kill_one, daemon=True)
        killer.start()
        run_recipe(recipe, [], stages=["translate"])
        killer.join(timeout=5)
        assert killed, "no worker process found to kill"
        assert outputs(tmp_path / "kill" / "run") == want
        assert memory_rows(tmp_path / "kill" / "run") == want_rows
    finally:
        stub.close()
