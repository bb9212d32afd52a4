"""Translate with Ray workers: `translate.executor: ray` (pip install "mothertongue[ray]").

    mothertongue translate recipe.yaml translate.executor=ray translate.ray.workers=4
    mothertongue translate recipe.yaml translate.executor=ray translate.ray.address=auto translate.ray.num_gpus=0.5

The driver (this process) plans as usual and cuts each leg's missing segments into the same
batches as the local executor; Ray actors, each holding one engine (loaded once per worker,
`translate.ray.num_cpus`/`num_gpus` each; fractions let two CTranslate2 engines share a GPU),
translate and gate one batch per call, taken by whichever worker is free (`ray.util.ActorPool`;
each worker has a second batch queued, so it never waits for the driver between batches).
Results come back to the driver, which alone writes the translation memory, one transaction per
batch: every segment lands exactly once. A worker process that dies is restarted by Ray
(`max_restarts`) and its batch is run again (`max_task_retries`); identical batches on the same
engine give identical outputs, so the assembled data is byte-identical to a local run.

Plain actors rather than Ray Data: the unit of work is already a length-sorted token-budgeted
batch, the model must stay loaded between batches, and results must flow back to one writer
(the SQLite memory), which an actor pool does with nothing else to configure.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

from mothertongue.config import Recipe
from mothertongue.engines.catalogue import Leg
from mothertongue.errors import MothertongueError
from mothertongue.runs import StageError

IN_FLIGHT = 2  # batches queued per worker


def import_ray():
    try:
        import ray
    except ImportError:
        raise StageError(
            'translate.executor: ray needs Ray, which is not installed; pip install "mothertongue[ray]" '
            "(or set translate.executor=local)"
        ) from None
    return ray


class TranslatorActor:
    """One Ray worker: one engine, translating and gating one batch per call."""

    def __init__(self, engine: str, model: str, device: str, options: dict, batch_tokens: int,
                 allow_pickle: bool, translate: dict):  # fmt: skip
        from mothertongue.config import TranslateConfig
        from mothertongue.engines import load_engine

        self.t = TranslateConfig.model_validate(translate)
        self.eng = load_engine(
            engine, model, device, options, batch_tokens=batch_tokens, allow_pickle=allow_pickle
        )
        self.langids: dict[Leg, Any] = {}

    def pid(self) -> int:
        return os.getpid()

    def translate(
        self, leg: tuple[str, str, str], chunk: list[str]
    ) -> tuple[list[str], list[str], list[str], dict]:
        from mothertongue.translate.work import leg_langid, translate_batch

        key = Leg(*leg)
        if key not in self.langids:
            self.langids[key] = leg_langid(self.t, key)
        return (chunk, *translate_batch(self.eng, chunk, key, self.t, self.langids[key]))


class RayExecutor:
    """Batches translated by a pool of Ray actors per model (created on first use)."""

    def __init__(self, recipe: Recipe):
        self.ray = import_ray()
        self.t = recipe.translate
        self.cfg = recipe.translate.ray
        self.started = False
        if not self.ray.is_initialized():
            # A local cluster gets room for every worker asked for (else actors would wait forever).
            cpus = (
                None
                if self.cfg.address
                else max(os.cpu_count() or 1, math.ceil(self.cfg.workers * self.cfg.num_cpus))
            )
            self.ray.init(address=self.cfg.address, num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                          configure_logging=False)  # fmt: skip
            self.started = True
        self.pools: dict[str, tuple[list, Any]] = {}

    def actors(self, model: str) -> tuple[list, Any]:
        """The workers holding the model's engine, and their pool."""
        if model not in self.pools:
            from ray.util import ActorPool

            t = self.t
            actor = self.ray.remote(
                num_cpus=self.cfg.num_cpus, num_gpus=self.cfg.num_gpus, max_restarts=self.cfg.max_restarts,
                max_task_retries=-1,
            )(TranslatorActor)  # fmt: skip
            spec = t.model_dump()
            workers = [
                actor.remote(
                    t.engine, model, t.device, t.options, t.batch_tokens, t.allow_pickle, spec
                )
                for _ in range(self.cfg.workers)
            ]
            # each worker listed twice: its next batch is already queued while the driver commits
            # the last one's results, so a worker does not wait on the driver between batches
            self.pools[model] = (workers, ActorPool([w for w in workers for _ in range(IN_FLIGHT)]))
        return self.pools[model]

    def run(
        self, leg: Leg, batches: list[list[str]]
    ) -> Iterator[tuple[list[str], list[str], list[str], dict]]:
        if not batches:
            return
        _, pool = self.actors(leg.model)
        spec = (leg.src, leg.tgt, leg.model)
        try:
            yield from pool.map_unordered(lambda a, chunk: a.translate.remote(spec, chunk), batches)
        except self.ray.exceptions.RayError as e:
            cause = getattr(e, "cause", None)
            if isinstance(
                cause, MothertongueError
            ):  # the engine's own one-line error, from the worker
                raise type(cause)(str(cause)) from None
            raise StageError(
                f"translate (ray): a worker failed for good ({type(e).__name__}: {_first_line(e)}); the batches "
                "that finished are in the translation memory, rerun to continue"
            ) from None

    def close(self) -> None:
        for workers, _ in self.pools.values():
            for w in workers:
                self.ray.kill(w)
        self.pools.clear()
        if self.started:
            self.ray.shutdown()


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]
