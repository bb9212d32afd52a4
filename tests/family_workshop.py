"""Every family's runs, exports and GGUF for the stage tests, made by two worker processes.

    from family_workshop import Workshop
    shop = Workshop(tmp_path, ["qwen2.5"], gguf=set())
    shop.made("qwen2.5", "lora")   # waits for the family's LoRA run folder

Per family, the stage tests need a base, a LoRA and a full run, the LoRA run's export, and its
GGUF with doctor's verdict: ~230 s of single-threaded work over the ten families. Two spawned
worker processes make it on both cores while the tests assert on what is already made, in the
order the tests ask for it (trained runs of every family first, then exports and GGUF).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from family_models import FAMILIES, make_base, recipe_overrides, write_data, write_recipe

TRAIN_STEPS, EXPORT_STEPS = ("base", "lora", "full"), ("export", "gguf", "doctor")


def _worker_init() -> None:
    import os

    import torch

    torch.set_num_threads(1)  # see family_models.one_thread: tiny models, shared cores
    os.environ["OMP_NUM_THREADS"] = "1"


def _run(name: str, base: Path, root: Path, adapter: str, share: Path | None) -> Path:
    from helpers import run_recipe

    data = write_data(root / "data.jsonl")
    rec = write_recipe(root / "recipe.yaml", data)
    run_dir = root / f"run-{adapter}"
    if share is not None and not run_dir.exists():
        # Same data, base and template: the other adapter's ingest and build are this run's (their
        # fingerprints leave train settings out), so the stages skip and train runs.
        for stage in ("ingest", "build"):
            shutil.copytree(share / stage, run_dir / stage)
    run_recipe(rec, recipe_overrides(name, base, data, run_dir, adapter), ["ingest", "build", "train"])
    return run_dir


def _export(name: str, run_dir: Path, root: Path) -> tuple[Path, dict]:
    """`export --format merged[,ct2]` of the LoRA run (ct2 where CTranslate2 has a converter)."""
    from mothertongue.export import export

    out = root / "export"
    formats = ("merged", "ct2") if FAMILIES[name].ct2 else ("merged",)
    return out, export(run_dir, out, formats, ct2_quantization="float32", log=lambda m: None)


def _gguf(merged: Path, dest: Path) -> dict:
    """f32 GGUF of the merged model, loaded back and compared (export refuses in one line where it
    cannot be checked)."""
    from mothertongue.export import find_llama_cpp, to_gguf

    checkout = find_llama_cpp(None, log=lambda m: None)
    prompts = [[{"role": "user", "content": "Wie spät ist es?"}]]
    return to_gguf(merged, dest, "f32", checkout, prompts=prompts, max_new_tokens=8, log=lambda m: None)


def make_steps(name: str, root: Path, steps: tuple[str, ...], made: dict) -> tuple[dict, dict]:
    """Run `steps` for one family (in a worker). Returns (made, failed): each step's result, or its
    exception and traceback; a step whose input failed is failed too, naming that input."""
    import pickle
    import traceback

    from mothertongue.doctor import check_gguf

    root = root / name
    jobs = {
        "base": ((), lambda: make_base(name, root / "base")),
        "lora": (("base",), lambda: _run(name, made["base"], root, "lora", None)),
        "full": (("base",), lambda: _run(name, made["base"], root, "full", made.get("lora"))),
        "export": (("lora",), lambda: _export(name, made["lora"], root)),
        "gguf": (("export",), lambda: _gguf(made["export"][0] / "merged", root / "m.gguf")),
        "doctor": (("base",), lambda: check_gguf(str(made["base"]), fetch=True, log=lambda m: None)),
    }
    made, failed = dict(made), {}
    for step in steps:
        needs, fn = jobs[step]
        missing = [n for n in needs if n not in made]
        if missing:
            failed[step] = (RuntimeError(f"{name}: not made because {', '.join(missing)} failed"), "")
            continue
        try:
            made[step] = fn()
        except Exception as e:  # noqa: BLE001 - handed to the test that checks this step
            try:
                pickle.dumps(e)
            except Exception:  # noqa: BLE001
                e = RuntimeError(f"{type(e).__name__}: {e}")
            failed[step] = (e, traceback.format_exc())
    return made, failed


class Workshop:
    """Makes every family's runs and exports in two worker processes, on first use.

    `made(name, step)` waits for the step and returns its result; `failed(name, step)` returns the
    exception the step raised (for the refusals the tests expect), or None."""

    def __init__(self, root: Path, names: list[str], gguf: set[str], workers: int = 2):
        import multiprocessing
        import threading
        from concurrent.futures import ProcessPoolExecutor

        self.root, self.gguf = root, gguf
        self.results: dict[str, tuple[dict, dict]] = {}
        self.done = {n: threading.Event() for n in names}
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_worker_init)
        for n in names:
            self.pool.submit(make_steps, n, root, TRAIN_STEPS, {}).add_done_callback(
                lambda f, n=n: self._trained(n, f))

    def _trained(self, name: str, fut) -> None:
        try:
            self._then_export(name, fut)
        except BaseException as e:  # a callback's exception is otherwise only logged: the test would wait
            self.results[name] = ({}, {s: (e, "") for s in TRAIN_STEPS + EXPORT_STEPS})
            self.done[name].set()

    def _then_export(self, name: str, fut) -> None:
        made, failed = self._outcome(fut)
        self.results[name] = (made, failed)
        steps = tuple(s for s in EXPORT_STEPS if s == "export" or name in self.gguf)
        try:
            later = self.pool.submit(make_steps, name, self.root, steps, made)
        except RuntimeError as e:  # the pool was shut down (the module ended early)
            self.results[name] = (made, {**failed, **{s: (e, "") for s in steps}})
            self.done[name].set()
            return
        later.add_done_callback(lambda f: self._exported(name, f))

    def _exported(self, name: str, fut) -> None:
        made, failed = self._outcome(fut)
        self.results[name] = (made, {**self.results[name][1], **failed})
        self.done[name].set()

    @staticmethod
    def _outcome(fut) -> tuple[dict, dict]:
        if fut.exception() is not None:  # the worker died (killed, out of memory)
            e = fut.exception()
            return {}, {s: (e, "") for s in TRAIN_STEPS + EXPORT_STEPS}
        return fut.result()

    def _wait(self, name: str, step: str, timeout: float = 1200) -> tuple[dict, dict]:
        import time

        def there() -> bool:
            made, failed = self.results.get(name, ({}, {}))
            return step in made or step in failed

        end = time.monotonic() + timeout
        while not there():
            if self.done[name].wait(1) and not there():
                raise KeyError(f"{name}: step {step} was not asked for")
            if time.monotonic() > end:
                raise AssertionError(f"{name}: no {step} from the workers within {timeout:.0f} s")
        return self.results[name]

    def made(self, name: str, step: str):
        made, failed = self._wait(name, step)
        if step in failed:
            e, tb = failed[step]
            raise AssertionError(f"{name}: {step} failed in the worker:\n{tb or e}")
        return made[step]

    def failed(self, name: str, step: str) -> BaseException | None:
        made, failed = self._wait(name, step)
        return failed[step][0] if step in failed else None

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)
