"""The trainers the train stage runs: TRL's, with two additions, and the function that builds one.

    mothertongue train RECIPE train.method=sft|dpo|orpo|cpt train.adapter=full|lora|qlora

The training loop is TRL's (SFTTrainer, DPOTrainer, ORPOTrainer). The subclasses here add:
- a loss curve that a resume does not change (the logging accumulators travel in the checkpoint);
- embeddings and LM head on their own learning rate (`train.train_embeddings`), for every method;
- for SFT on CPU, the loss from `training/cpu/loss.py` (`train.cpu_kernels`, see `training/cpu`).
`build_trainer` sets a trainer up for a recipe (PEFT adapter, CPU kernels); `after_training` undoes
the training-only settings before the model is saved or used.
"""

from __future__ import annotations

import json
from pathlib import Path

from peft import LoraConfig, prepare_model_for_kbit_training
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import DPOTrainer, SFTTrainer
from trl.experimental.orpo import ORPOTrainer
from trl.kernels.chunked_logprob import _use_triton

from mothertongue import progress
from mothertongue.config import Recipe
from mothertongue.runs import atomic_write_json
from mothertongue.training import cpu
from mothertongue.training.args import learning_rate, make_args
from mothertongue.training.callbacks import TrainProgress


class ResumableLogging:
    """Mixin for a transformers Trainer: each checkpoint also keeps what has been accumulated since
    the last log line (the summed loss, TRL's per-step metrics, its token count), and a resumed run
    starts from it. Without this a run resumed between two logging steps logs, at the next one, the
    mean over the steps since the resume only, and TRL's token count restarts from zero: the loss
    curve differs from an uninterrupted run's although the weights are the same. Written before
    the checkpoint's trainer_state.json, which marks a checkpoint complete."""

    LOGGING_STATE = "mothertongue_logging.json"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._resumed_logging: dict | None = None
        self.add_callback(_RestoreLogging(self))

    def _save_checkpoint(self, model, trial):
        if self.args.should_save and hasattr(self, "_tr_loss") and hasattr(self, "_globalstep_last_logged"):
            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            state = {
                "global_step": self.state.global_step,
                "tr_loss": float(self._tr_loss),
                "last_logged": self._globalstep_last_logged,
                "metrics": {m: dict(v) for m, v in getattr(self, "_metrics", {}).items()},
                "stored_metrics": {m: dict(v) for m, v in getattr(self, "_stored_metrics", {}).items()},
                "total_train_tokens": getattr(self, "_total_train_tokens", None),
            }
            atomic_write_json(folder / self.LOGGING_STATE, state)
        super()._save_checkpoint(model, trial)

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        state = None
        if isinstance(resume_from_checkpoint, str):
            path = Path(resume_from_checkpoint) / self.LOGGING_STATE
            state = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
        self._resumed_logging = state
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def restore_logging(self) -> None:
        """Put the accumulators back as they were when the resumed checkpoint was saved."""
        state, self._resumed_logging = self._resumed_logging, None
        if not state or state["global_step"] != self.state.global_step:
            return
        self._tr_loss.fill_(state["tr_loss"])
        self._globalstep_last_logged = state["last_logged"]
        for attr, key in (("_metrics", "metrics"), ("_stored_metrics", "stored_metrics")):
            held = getattr(self, attr, None)
            for mode, values in state[key].items():
                if held is not None and mode in held:
                    held[mode].clear()
                    held[mode].update(values)
        if state["total_train_tokens"] is not None and hasattr(self, "_total_train_tokens"):
            self._total_train_tokens = state["total_train_tokens"]


class _RestoreLogging(TrainerCallback):
    """Calls `restore_logging` once the training loop has reset its accumulators."""

    def __init__(self, trainer: ResumableLogging):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer.restore_logging()


class EmbeddingLearningRate:
    """Mixin for a transformers Trainer: when `embedding_lr` is set, the parameters of the modules
    named in `embedding_modules` (input embeddings, LM head) get that learning rate instead of the
    trainer's. A new language needs its tokens' vectors to move, but more gently than the rest."""

    embedding_modules: tuple[str, ...] = ()
    embedding_lr: float | None = None

    def create_optimizer(self, model=None):
        new = self.optimizer is None
        opt = super().create_optimizer(model)
        if not new or self.embedding_lr is None:
            return opt
        names = set(self.embedding_modules)
        emb = {id(p) for n, p in (model or self.model).named_parameters() if p.requires_grad and names & set(n.split("."))}
        # Split each group (decay / no decay) into its embedding and other parameters, before the
        # scheduler is built so it scales both rates alike.
        groups = []
        for g in opt.param_groups:
            rest = [p for p in g["params"] if id(p) not in emb]
            moved = [p for p in g["params"] if id(p) in emb]
            opts = {k: v for k, v in g.items() if k != "params"}
            if rest:
                groups.append({**opts, "params": rest})
            if moved:
                groups.append({**opts, "params": moved, "lr": self.embedding_lr})
        opt.param_groups.clear()
        for g in groups:
            opt.add_param_group(g)
        return opt


class MothertongueSFTTrainer(ResumableLogging, EmbeddingLearningRate, SFTTrainer):
    """TRL's SFTTrainer; with `cpu_loss` set, the training loss on CPU in one process comes from
    `training.cpu.loss.sft_loss` (trained positions only, LM head fused in) instead of TRL's CPU
    path, which scores every position. Evaluation, GPUs, multi-process runs and MoE auxiliary
    losses keep TRL's own `compute_loss`."""

    cpu_loss: bool = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.get("labels")
        if (not self.cpu_loss or return_outputs or labels is None or _use_triton(labels.device)
                or self.accelerator.num_processes > 1 or self.aux_loss_enabled or not self.model.training):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        from mothertongue.training.cpu.loss import sft_loss

        return sft_loss(self, model, inputs, num_items_in_batch)


class MothertongueDPOTrainer(ResumableLogging, EmbeddingLearningRate, DPOTrainer):
    """TRL's DPOTrainer, with embeddings and LM head on their own learning rate when asked, and
    the same loss curve whether or not the run was resumed."""


class MothertongueORPOTrainer(ResumableLogging, EmbeddingLearningRate, ORPOTrainer):
    """TRL's ORPOTrainer, with embeddings and LM head on their own learning rate when asked, and
    the same loss curve whether or not the run was resumed."""


TRAINERS = {"sft": MothertongueSFTTrainer, "cpt": MothertongueSFTTrainer, "dpo": MothertongueDPOTrainer,
            "orpo": MothertongueORPOTrainer}


def embedding_module_names(model) -> list[str]:
    """Leaf names of the input embedding and LM head modules (e.g. embed_tokens, lm_head)."""
    wanted = {id(model.get_input_embeddings())}
    out_emb = model.get_output_embeddings()
    if out_emb is not None:
        wanted.add(id(out_emb))
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if id(m) in wanted and name})


def lora_config(recipe: Recipe, model) -> LoraConfig:
    cfg = recipe.train
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules,
        use_dora=cfg.use_dora,
        use_rslora=cfg.use_rslora,
        # Embeddings and LM head are trained in full (not low-rank) when asked: a new language
        # needs its tokens' vectors to move, which a rank-r update of a linear layer cannot do.
        modules_to_save=embedding_module_names(model) if cfg.train_embeddings else None,
        task_type="CAUSAL_LM",
    )


def hidden_size(model) -> int | None:
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return getattr(cfg, "hidden_size", None)


def build_trainer(recipe: Recipe, model, tokenizer, train_ds, eval_ds, out: Path):
    """The configured trainer for the recipe's method; PEFT wraps the model inside it for lora/qlora."""
    cfg = recipe.train
    emb_names = embedding_module_names(model)
    if cfg.adapter == "full" and cfg.train_embeddings:
        for p in model.parameters():
            p.requires_grad_(True)
    peft = lora_config(recipe, model) if cfg.adapter in ("lora", "qlora") else None
    if cfg.adapter == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    args = make_args(recipe, out, eval_ds is not None, hidden_size(model))
    kernels = cpu.enabled(cfg.cpu_kernels)
    frozen_bf16 = False
    if kernels:
        from mothertongue.training.cpu import attention, lora

        frozen_bf16 = lora.keep_frozen_base_in_bf16(cfg.adapter, cfg.train_embeddings, bool(args.bf16), model)
        if frozen_bf16:
            import torch

            model.to(torch.bfloat16)
        packed = getattr(args, "packing", False) and getattr(args, "packing_strategy", "") in ("bfd", "bfd_split")
        if getattr(args, "padding_free", False) or packed:
            attention.use_varlen(model)  # no block-diagonal attention over the whole packed row
    trainer = TRAINERS[cfg.method](
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=peft,
    )
    if not progress.verbose():  # the metrics dicts and tqdm bar go to the log and our display instead
        for cb in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(cb)
    trainer.add_callback(TrainProgress())
    if cfg.train_embeddings:
        trainer.embedding_modules = tuple(emb_names)
        trainer.embedding_lr = cfg.embedding_learning_rate or learning_rate(recipe) / 10
    if kernels and isinstance(trainer, SFTTrainer):
        reason = cpu.missing(trainer, cpu.TRAINER_ATTRS)
        if reason:
            cpu.tell(reason)
        trainer.cpu_loss = reason is None
    if frozen_bf16:
        from mothertongue.training.cpu import lora

        lora.set_adapter_input_casting(trainer.model, False)
        lora.use_fused(trainer.model)  # each adapted layer in one step
    return trainer


def after_training(model) -> None:
    """Undo the training-only settings before the model is saved, evaluated or chatted with."""
    if cpu.unsupported():  # nothing was changed, and the kernels' modules may not even import
        return
    from mothertongue.training.cpu import attention, lora

    attention.restore(model)
    lora.restore(model)
    lora.set_adapter_input_casting(model, True)
