"""Recipes: one YAML file describes a whole run; one strict config class per stage.

    recipe = load_recipe("recipes/quickstart.yaml", ["train.epochs=3", "build.template=chatml"])

Every field documents itself (`description=`), unknown keys are errors that name the dotted path
and suggest close matches, and a bad value reads `train.learning_rate: must be > 0`, never a
traceback. Paths inside a recipe are relative to the recipe file; `run_dir` is relative to the
directory you run the command from.

Where things live: `base.py` (the strict base class), `data.py` (ingest, translate, vocab,
build), `train.py` (tiny model, train, vision), `use.py` (evaluate, chat, serve), `recipe.py`
(the whole recipe, loading with overrides, saving as run).
"""

from mothertongue.config.base import Strict
from mothertongue.config.data import (
    BuildConfig,
    IngestConfig,
    MixConfig,
    NativeSourceConfig,
    QualityEstimationConfig,
    RayConfig,
    RoundTripConfig,
    SourceConfig,
    TranslateConfig,
    VocabConfig,
)
from mothertongue.config.recipe import RESOLVED_HEADER, Recipe, load_recipe, save_resolved
from mothertongue.config.train import (
    TinyModelConfig,
    TrainConfig,
    VisionConfig,
    VisionHFOptions,
    VisionSourceConfig,
    VisionTrainConfig,
)
from mothertongue.config.use import ChatConfig, EvaluateConfig, JudgeConfig, ServeConfig
from mothertongue.errors import RecipeError
from mothertongue.overrides import format_validation_error

__all__ = [
    "RESOLVED_HEADER",
    "BuildConfig",
    "ChatConfig",
    "EvaluateConfig",
    "IngestConfig",
    "JudgeConfig",
    "MixConfig",
    "NativeSourceConfig",
    "QualityEstimationConfig",
    "RayConfig",
    "Recipe",
    "RecipeError",
    "RoundTripConfig",
    "ServeConfig",
    "SourceConfig",
    "Strict",
    "TinyModelConfig",
    "TrainConfig",
    "TranslateConfig",
    "VisionConfig",
    "VisionHFOptions",
    "VisionSourceConfig",
    "VisionTrainConfig",
    "VocabConfig",
    "format_validation_error",
    "load_recipe",
    "save_resolved",
]
