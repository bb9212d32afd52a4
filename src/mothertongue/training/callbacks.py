"""The train stage's line in the progress display: a transformers TrainerCallback.

    mothertongue train recipes/quickstart.yaml       # train ━━━━━━━━━  120/360 steps  2.1 steps/s  ETA 1m54s  epoch 13.3, loss 1.234, ...

Shows step/total, epoch, loss, learning rate, tokens/s and the dev loss once evaluated, rounded
for people (`progress.num`). Each logging step's full metrics dict goes to the stage log
(`RUN_DIR/logs/train.txt`) instead of the screen; `build_trainer` removes the Trainer's own
printer unless `mothertongue -v`.
"""

from __future__ import annotations

import json
import time

from transformers import TrainerCallback

from mothertongue import progress


class TrainProgress(TrainerCallback):
    """Feeds `progress` from the Trainer's events (main process only)."""

    def __init__(self) -> None:
        self.task: progress.Task | None = None
        self._t0 = 0.0
        self._tokens0 = 0
        # shown in this order; None until known
        self.shown: dict = {
            "epoch": None,
            "loss": None,
            "lr": None,
            "tokens/s": None,
            "dev loss": None,
        }

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.task = progress.open_task("train", total=state.max_steps, unit="steps")
        if state.global_step:
            self.task.skip(state.global_step)  # a resumed run: the rate counts this run's steps
        self._t0, self._tokens0 = time.monotonic(), int(state.num_input_tokens_seen or 0)

    def on_step_end(self, args, state, control, **kwargs):
        if self.task is None:
            return
        seconds = time.monotonic() - self._t0
        tokens = int(state.num_input_tokens_seen or 0) - self._tokens0
        self.shown["epoch"] = state.epoch
        self.shown["tokens/s"] = tokens / seconds if seconds > 0 and tokens else None
        self.task.update(completed=state.global_step, **self.shown)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.task is None or not logs:
            return
        progress.log_line(f"step {state.global_step}: {json.dumps(logs)}")
        for key, name in (("loss", "loss"), ("learning_rate", "lr"), ("eval_loss", "dev loss")):
            if key in logs:
                self.shown[name] = logs[key]
        self.task.update(**self.shown)

    def on_train_end(self, args, state, control, **kwargs):
        if self.task is not None:
            self.task.update(completed=state.global_step, **self.shown)
            self.task.close()
            self.task = None
