"""`articlegen train NAME`: fine-tune a model (or train one from scratch) with the
fine-tune-model Prefect flow, in this process, with a progress bar."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource
from pydantic import ValidationError

from articlegen.cli.base import CONTEXT, App, cli, pass_app
from articlegen.cli.output import render
from articlegen.cli.prefect_env import quiet_prefect
from articlegen.core.errors import ConfigError, InputError
from articlegen.core.interrupts import interrupted
from articlegen.db import registry
from articlegen.db.models import ModelStatus
from articlegen.export.records import epoch_records

# Not the trainer: torch and transformers take seconds to import.
from articlegen.training.corpus import check_files
from articlegen.training.params import TrainParams
from articlegen.training.selection import check_new_name, stored_params
from articlegen.training.store import running

__all__ = ["run_training"]

F = TypeVar("F", bound=Callable[..., Any])

# Each option's flag, for the field it sets: messages name what the user typed.
_FLAGS = {
    "base": "--base",
    "from_scratch": "--from-scratch",
    "size": "--size",
    "corpus": "--corpus",
    "from_approved": "--from-approved",
    "tags": "--tag",
    "since": "--since",
    "epochs": "--epochs",
    "learning_rate": "--lr",
    "warmup_steps": "--warmup-steps",
    "grad_accum": "--grad-accum",
    "max_grad_norm": "--max-grad-norm",
    "batch_size": "--batch-size",
    "block_size": "--block-size",
    "eval_fraction": "--eval-fraction",
    "patience": "--patience",
    "seed": "--seed",
    "gradient_checkpointing": "--gradient-checkpointing",
    "memorisation_samples": "--memorisation-samples",
    "memorisation_limit": "--memorisation-limit",
}


class _Moment(click.ParamType[datetime]):
    """An ISO 8601 date or date and time; without a zone, UTC."""

    name = "DATE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a date: use 2026-11-30 or 2026-11-30T14:00", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _recipe(field: str, **kwargs: Any) -> Callable[[F], F]:
    """An option whose default and help are the `TrainParams` field's: one source for both."""
    info = TrainParams.model_fields[field]
    default = None if info.default_factory else info.default
    return click.option(
        _FLAGS[field], field, default=default, show_default=default is not None,
        help=info.description, **kwargs,
    )  # fmt: skip


@cli.command("train", context_settings=CONTEXT)
@click.argument("name")
@click.option("--resume", is_flag=True, help="Continue NAME's run that stopped, as it started.")
@_recipe("base", metavar="MODEL")
@_recipe("from_scratch", is_flag=True)
@_recipe("size", type=click.Choice(["tiny", "mini", "small"]))
@_recipe("corpus", multiple=True, type=click.Path(path_type=Path), metavar="FILE")
@_recipe("from_approved", is_flag=True)
@_recipe("tags", multiple=True, metavar="TAG")
@_recipe("since", type=_Moment())
@_recipe("epochs", type=int)
@_recipe("learning_rate", type=float)
@_recipe("warmup_steps", type=int)
@_recipe("grad_accum", type=int)
@_recipe("max_grad_norm", type=float)
@_recipe("batch_size", type=int)
@_recipe("block_size", type=int)
@_recipe("eval_fraction", type=float)
@_recipe("patience", type=int)
@_recipe("seed", type=int)
@_recipe("gradient_checkpointing", is_flag=True)
@_recipe("memorisation_samples", type=int)
@_recipe("memorisation_limit", type=int)
@click.pass_context
@pass_app
def train(app: App, ctx: click.Context, /, name: str, resume: bool, **options: Any) -> None:
    """Fine-tune a model on a corpus and/or approved articles and register it as NAME.

    The defaults are the recipe of the method articlegen comes from (AdamW at 5e-5, 200
    warm-up steps, 5 epochs, 32 batches per optimizer step, gradient norm clipped at 1). Each
    epoch is evaluated on held-out documents and checkpointed; training stops early when the
    eval loss stops improving, and the best epoch is kept. A run that dies continues with
    --resume. Generate with the result: articlegen generate --model NAME.

    Example: articlegen train support-v1 --from-approved --tag support --epochs 3
    """
    given = [
        _FLAGS[k] for k in options if ctx.get_parameter_source(k) is not ParameterSource.DEFAULT
    ]
    if resume and given:
        raise click.UsageError(
            f"--resume continues {name!r} with the options it started with: drop {', '.join(given)}"
        )
    params = None if resume else _params(name, options)
    # What can be refused without training is refused now, before Prefect starts.
    if params is not None:
        check_new_name(app.context, name)
        check_files(params.corpus)
    else:
        stored_params(app.context, name)
    if running(app.settings, name):
        raise InputError(
            f"model {name!r} is being trained by another process right now: wait for it, or "
            "stop it first"
        )
    run_training(app, name, params)


def _params(name: str, options: dict[str, Any]) -> TrainParams:
    options = {**options, "corpus": list(options["corpus"]), "tags": list(options["tags"])}
    try:
        return TrainParams(name=name, **options)
    except ValidationError as exc:
        raise ConfigError("; ".join(_describe(e) for e in exc.errors())) from None


def _describe(error: Any) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    field = str(error["loc"][0]) if error["loc"] else ""
    if field == "name":
        return (
            f"model name {error['input']!r}: use letters, digits, '.', '_' and '-' (at most "
            "100, starting with a letter or digit)"
        )
    if field in _FLAGS:
        return f"{_FLAGS[field]}: {message[:1].lower()}{message[1:]}, got {error['input']!r}"
    return message


def run_training(app: App, name: str, params: TrainParams | None) -> None:
    """Run fine-tune-model in this process with a progress bar, and report the outcome: a new
    run of `params`, or with `params` None, continue `name`'s run that stopped."""
    quiet_prefect()
    # Imported here: Prefect, torch and transformers take seconds to import.
    from articlegen.flows.train import fine_tune_model

    done = threading.Event()
    told: set[str] = set()  # warnings the follower printed as the run started
    follower = threading.Thread(target=_follow, args=(app, name, done, told), daemon=True)
    follower.start()
    try:
        result = fine_tune_model(params=params, resume=None if params else name)
    except BaseException as exc:
        if not interrupted(exc):
            raise
        with app.database.session(write=False) as session:
            started = registry.find_model(session, name) is not None
        then = (
            f"continue it with `articlegen train {name} --resume`"
            if started
            else "it had not started: nothing was kept"
        )
        click.echo(f"Interrupted: {then}.", err=True)
        raise SystemExit(130) from None  # the shell's code for a run stopped by Ctrl-C
    finally:
        done.set()
        follower.join()
    for warning in result.warnings:
        if warning not in told:
            click.echo(f"Warning: {warning}", err=True)
    click.echo(render(epoch_records(result.epochs, result.best_epoch), "table"))
    first, last = result.epochs[0], result.epochs[-1]
    best = result.best
    stopped = f", stopped early after epoch {last['epoch']}" if result.stopped_early else ""
    click.echo(
        f"Model {name} ready: eval perplexity {first['eval_perplexity']:.2f} before training, "
        f"{best['eval_perplexity']:.2f} at epoch {best['epoch']} (kept){stopped}; "
        f"{result.train_tokens:,} training tokens at {result.tokens_per_second:,.0f} tokens/s, "
        f"{result.seconds:.1f} s in all."
    )
    memorisation = result.memorisation
    if memorisation is not None:
        overlap = (
            f"Memorisation: the longest verbatim run from the training text in "
            f"{memorisation.samples} samples is {memorisation.longest_overlap} tokens"
        )
        if memorisation.flagged:
            click.echo(
                f"Warning: {overlap}, at or over --memorisation-limit {memorisation.limit}: the "
                "model repeats its training text. Train fewer epochs or on more documents, or "
                f"check its articles closely. Example: {memorisation.example[:120]!r}",
                err=True,
            )
        else:
            click.echo(f"{overlap} (limit {memorisation.limit}).")
    click.echo(
        f"Weights: {result.directory / 'model'}; loss curve: {result.loss_curve}\n"
        f"Next: articlegen generate --model {name}"
    )


def _follow(app: App, name: str, done: threading.Event, told: set[str]) -> None:
    """Print the run's warnings as it starts, then draw a progress bar from the registry row's
    progress until `done` is set."""

    def progress() -> dict[str, Any]:
        with app.database.session(write=False) as session:
            row = registry.find_model(session, name)
            # Only a row that is training: a finished one of the same name is not this run.
            if row is None or row.status is not ModelStatus.TRAINING:
                return {}
            return dict(row.progress)

    steps = 0
    while not steps:  # known once the corpus is read and the model loaded
        if done.wait(0.5):
            return
        seen = progress()
        steps = int(seen.get("steps", 0))
    for warning in seen.get("warnings", []):
        click.echo(f"Warning: {warning}", err=True)
        told.add(warning)
    with click.progressbar(length=steps, label=f"Training {name}", file=sys.stderr) as bar:
        while True:
            stop = done.wait(0.5)
            bar.update(int(progress().get("step", bar.pos)) - bar.pos)
            if stop:
                return
