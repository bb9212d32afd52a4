"""Experiment trackers of the train stage (`train.report_to`), passed to the Trainer.

    mothertongue train recipes/quickstart.yaml train.report_to=wandb          # or [tensorboard, mlflow]
    mothertongue train recipes/quickstart.yaml train.report_to=none           # nothing at all

`auto` (the default) is TensorBoard when it is installed (logs in `RUN_DIR/train/tensorboard/`),
else nothing. Weights & Biases, MLflow and Trackio report only when the recipe names them, never
because they happen to be installed; a named tracker that is not installed is a one-line error,
raised when the recipe is loaded by a command (`validate`, `run`, `train`, ...), before any work.
"""

from __future__ import annotations

import importlib.util

from mothertongue.errors import RecipeError

# name in the recipe -> (module to import, the package extra that installs it)
TRACKERS = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
    "trackio": ("trackio", "trackio"),
}


def installed(name: str) -> bool:
    return importlib.util.find_spec(TRACKERS[name][0]) is not None


def report_to(recipe) -> list[str]:
    """The trackers the Trainer reports to (`report_to` of its arguments)."""
    names = recipe.train.report_to
    if names == ["auto"]:
        return ["tensorboard"] if installed("tensorboard") else []
    if names == ["none"]:
        return []
    check(recipe)
    return list(names)


def check(recipe) -> None:
    """A tracker the recipe names that is not installed: a one-line error naming the package."""
    for name in recipe.train.report_to:
        if name in TRACKERS and not installed(name):
            module, extra = TRACKERS[name]
            raise RecipeError(
                f'train.report_to: {name} is not installed; pip install "mothertongue[{extra}]" '
                f"(or pip install {module}), or drop it from train.report_to"
            )
