"""The recipe as Hugging Face `TrainingArguments`: the step plan (how many optimizer steps, how
much warm-up), precision for the device, and evaluation, checkpoints and early stopping per
epoch."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import TrainingArguments

from articlegen.training.params import TrainParams

__all__ = ["StepPlan", "plan_steps", "precision", "training_arguments"]

# Warm-up may take at most this share of the optimizer steps.
MAX_WARMUP_SHARE = 0.1


@dataclass(frozen=True)
class StepPlan:
    """Optimizer steps per epoch and in all, the warm-up used, and why it was shortened."""

    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    warning: str | None = None


def plan_steps(train_blocks: int, params: TrainParams) -> StepPlan:
    """The optimizer steps `params` takes over `train_blocks` blocks, counted as the trainer
    counts them (a last, partial accumulation still steps).

    The seed's 200 warm-up steps suit corpora of thousands of steps; on a small one they would
    be most of the run, and the learning rate would barely reach its peak before it decays. So
    warm-up is cut to a tenth of the run, and the warning says so.
    """
    batches = math.ceil(train_blocks / params.batch_size)
    per_epoch = max(1, math.ceil(batches / params.grad_accum))
    total = per_epoch * params.epochs
    most = int(total * MAX_WARMUP_SHARE)
    if params.warmup_steps <= most:
        return StepPlan(per_epoch, total, params.warmup_steps)
    warning = (
        f"--warmup-steps {params.warmup_steps} is more than a tenth of this run's {total} "
        f"optimizer steps ({params.epochs} epochs of {per_epoch}: {train_blocks} blocks, "
        f"{params.batch_size} per batch, {params.grad_accum} per optimizer step); warming up for "
        f"{most} steps instead, so the learning rate reaches {params.learning_rate:g} while "
        "there is still training to do"
    )
    return StepPlan(per_epoch, total, most, warning)


def precision(device: torch.device, dtype: str) -> str:
    """`bf16`, `fp16` or `fp32`: mixed precision on a GPU that supports it (ARTICLEGEN_DTYPE
    `auto`, `bfloat16` or `float16`); full precision on the CPU, where it is faster anyway."""
    if device.type != "cuda" or dtype == "float32":
        return "fp32"
    if dtype == "float16":
        return "fp16"
    if torch.cuda.is_bf16_supported():
        return "bf16"
    if dtype == "bfloat16":
        return "fp32"  # asked for bf16 on a GPU without it: full precision, not a crash
    return "fp16"


def training_arguments(
    params: TrainParams, plan: StepPlan, checkpoints: Path, device: torch.device, mixed: str
) -> TrainingArguments:
    """The trainer's arguments: the recipe, evaluation and a checkpoint each epoch, the best
    epoch's weights kept, nothing reported anywhere."""
    return TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=params.epochs,
        learning_rate=params.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=plan.warmup_steps,
        gradient_accumulation_steps=params.grad_accum,
        max_grad_norm=params.max_grad_norm,
        optim="adamw_torch",
        per_device_train_batch_size=params.batch_size,
        per_device_eval_batch_size=params.batch_size,
        eval_strategy="epoch",
        # Evaluation needs the loss alone; keeping the logits would hold vocabulary x tokens.
        prediction_loss_only=True,
        save_strategy="epoch",
        logging_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        # The best epoch and the latest (to resume from); older ones are deleted.
        save_total_limit=2,
        # Early stopping's count of epochs without progress survives a resume, so a resumed run
        # stops where an uninterrupted one would.
        restore_callback_states_from_checkpoint=True,
        seed=params.seed,
        data_seed=params.seed,
        use_cpu=device.type == "cpu",
        bf16=mixed == "bf16",
        fp16=mixed == "fp16",
        activation_checkpointing=params.gradient_checkpointing,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
