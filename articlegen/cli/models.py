"""Commands for models: the registry, building a local one, and previewing an article
without the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from articlegen.cli.base import CONTEXT, App, Group, cli, pass_app
from articlegen.cli.options import format_option, preset_option, set_option
from articlegen.cli.output import render, show
from articlegen.core.bounds import MAX_SEED, PROMPT_FORMATS
from articlegen.core.errors import InputError
from articlegen.db.models import ModelStatus
from articlegen.db.registry import articles_written, get_model, list_models
from articlegen.export.records import MODEL_COLUMNS, epoch_records, model_record
from articlegen.training.store import remove_model, running

# --- preview ----------------------------------------------------------------------------------


@cli.command("preview", context_settings=CONTEXT)
@click.argument("topic")
@click.option(
    "--prompt",
    help="Text for the model to continue (in chat form, the user's message)  [default: from "
    "prompt.txt.j2]",
)
@click.option(
    "--prompt-format",
    type=click.Choice(PROMPT_FORMATS),
    help="plain: the text as is; chat: through the tokenizer's chat template; auto: chat when "
    "the tokenizer has one  [default: the preset's, else ARTICLEGEN_PROMPT_FORMAT]",
)
@click.option(
    "--system",
    help='System message (chat form only); --system "" for none  [default: the preset\'s, else '
    "ARTICLEGEN_SYSTEM_MESSAGE]",
)
@preset_option("Decoding preset (articlegen presets list)  [default: nucleus]")
@set_option("Override one decoding setting, e.g. --set temperature=0.8; repeatable.")
@click.option(
    "--seed",
    type=click.IntRange(min=0, max=MAX_SEED),
    help="The article's seed  [default: random]",
)
@click.option("--template", help="Article template stem  [default: article]")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["markdown", "html"]),
    default="markdown",
    show_default=True,
    help="Which rendering to print.",
)
@pass_app
def preview(
    app: App,
    topic: str,
    prompt: str | None,
    prompt_format: str | None,
    system: str | None,
    preset: str | None,
    overrides: dict[str, str],
    seed: int | None,
    template: str | None,
    fmt: str,
) -> None:
    """Write one article with the configured model and print it; nothing is stored.

    The model is ARTICLEGEN_MODEL (see `articlegen models init` when the Hub is out of reach).
    An instruct model gets the prompt through its chat template (see --prompt-format). A summary
    (words, tokens, perplexity, flags, prompt format, seed) goes to stderr.

    Example: articlegen preview "Night trains in Europe" --preset precise --set max_new_tokens=120
    """
    # Imported here: torch and transformers take seconds to import, and most commands need
    # neither.
    from articlegen.generator.articles import ArticleFailure, ArticleInput, ArticleWriter
    from articlegen.generator.chat import PromptStyle, parse_style
    from articlegen.generator.decoding import DEFAULT_PRESET
    from articlegen.generator.engine import Engine
    from articlegen.generator.seeding import derive_seed, fresh_seed

    # The settings typed and checked together, in one step: `--set` values over the preset.
    resolved = app.presets.resolve_with_warnings(preset, overrides)
    for warning in resolved.warnings:
        click.echo(f"Warning: {warning}", err=True)
    config = resolved.config
    own = parse_style({"prompt_format": prompt_format, "system": system}, clears=True)
    style = app.presets.style(preset, own, PromptStyle.from_settings(app.settings))
    if seed is None:
        seed = derive_seed(config.seed, topic) if config.seed is not None else fresh_seed()
    loaded = app.context.model()
    writer = ArticleWriter(Engine(loaded, batch_size=1), app.templates)
    item = ArticleInput(
        key=0,
        topic=topic,
        decoding=config,
        seed=seed,
        preset=preset or DEFAULT_PRESET,
        prompt=prompt,
        template=template,
        style=style,
    )
    (outcome,) = writer.write([item]).outcomes
    if isinstance(outcome, ArticleFailure):
        raise InputError(f"could not write the article: {outcome.reason}")
    click.echo(outcome.rendered[fmt], nl=False)
    metrics = outcome.metrics
    perplexity = f"{metrics.perplexity:.1f}" if metrics.perplexity is not None else "n/a"
    click.echo(
        f"{metrics.word_count} words, {outcome.generation.tokens_generated} tokens "
        f"({outcome.generation.finish_reason}), perplexity {perplexity}, "
        f"flags: {', '.join(metrics.flags) or 'none'}; model {loaded.name} @ "
        f"{loaded.revision[:19]}, {outcome.prompt_format} prompt, seed {seed}",
        err=True,
    )


# --- models ------------------------------------------------------------------------------------


@cli.group(cls=Group, context_settings=CONTEXT)
def models() -> None:
    """The model registry (every model that trained here or wrote an article), and local
    models built for tests, benchmarks and machines without the Hub.

    Example: articlegen models list
    """


@models.command("init")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--size",
    type=click.Choice(["tiny", "mini", "small"]),
    default="tiny",
    show_default=True,
    help="tiny: 2 layers, for tests. mini: 4 layers, 192 wide (up to 2.6M "
    "parameters, with a 4,096-token vocabulary). small: GPT-2 small's "
    "shape (124M parameters), for benchmarks.",
)
@click.option(
    "--corpus",
    type=click.Path(path_type=Path, dir_okay=False),
    help="UTF-8 text to train the tokenizer on  [default: examples/corpus.txt]",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the random weights.",
)
def model_init(directory: Path, size: str, corpus: Path | None, seed: int) -> None:
    """Write a randomly initialised GPT-2 and a BPE tokenizer trained on a corpus.

    Its weights are random, so its text is noise: it exercises the whole pipeline without a
    download. Its articles say so wherever they show (their model kind is `random`). Point
    ARTICLEGEN_MODEL at the directory to use it.

    Example: articlegen models init ./models/tiny --size tiny
    """
    # Imported here: torch and transformers take seconds to import, and most commands need
    # neither.
    from articlegen.generator.model_init import init_model

    report = init_model(directory, size=size, corpus=corpus, seed=seed)  # type: ignore[arg-type]
    click.echo(
        f"Wrote a random {report.size} GPT-2 ({report.parameters:,} parameters, "
        f"{report.vocabulary:,}-token vocabulary) to {report.path}. Use it with "
        f"ARTICLEGEN_MODEL={report.path}"
    )


@models.command("list")
@format_option
@pass_app
def models_list(app: App, fmt: str) -> None:
    """List registered models, newest first: trained here, or used to write articles.

    Example: articlegen models list --format json
    """
    with app.database.session(write=False) as session:
        records = [model_record(m, articles_written(session, m.id)) for m in list_models(session)]
    records = [_stopped(app, r, fmt) for r in records]
    click.echo(render(records, fmt, table_columns=MODEL_COLUMNS, empty="No models yet."))


def _stopped(app: App, record: dict[str, Any], fmt: str) -> dict[str, Any]:
    """A row left `training` by a process that is gone (killed, crashed) says so: `running`
    false, and in a table `training (stopped)`. Only processes on this machine are seen."""
    if record["status"] != ModelStatus.TRAINING:
        return record
    alive = running(app.settings, record["name"])
    record = {**record, "running": alive}
    if fmt == "table" and not alive:
        record["status"] = "training (stopped)"
    return record


@models.command("show")
@click.argument("name")
@format_option
@pass_app
def models_show(app: App, name: str, fmt: str) -> None:
    """Show one model: where it is, its base, corpus, recipe, every epoch's evaluation and its
    memorisation check.

    Example: articlegen models show support-v1
    """
    with app.database.session(write=False) as session:
        found = get_model(session, name)
        record = _stopped(app, model_record(found, articles_written(session, found.id)), fmt)
    if fmt != "table":
        click.echo(show(record, fmt))
        return
    # A terminal gets the nested fields one value per line, and the epochs as their own table.
    epochs, best = record.pop("epochs"), record["best_epoch"]
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    click.echo(show(flat, fmt))
    if epochs:
        click.echo("\nEvaluation per epoch (0: before training):")
        click.echo(render(epoch_records(epochs, best), "table"))


@models.command("rm")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def models_rm(app: App, name: str, yes: bool) -> None:
    """Remove a model from the registry, and a model trained here from disk too.

    The articles it wrote keep its name, revision and kind. Refused while it is training.

    Example: articlegen models rm support-v1 --yes
    """
    with app.database.session(write=False) as session:
        found = get_model(session, name)
        what = f"model {name!r} ({found.kind}, {found.status})"
    if not yes:
        click.confirm(f"Remove {what}?", abort=True)
    removed = remove_model(app.context, name)
    where = f" and deleted {removed.directory}" if removed.directory else ""
    if removed.kept:
        where = f"; its files in {removed.kept} are not where this setup keeps models, so they stay"
    written = (
        f"the {removed.articles} articles it wrote keep"
        if removed.articles != 1
        else "the article it wrote keeps"
    )
    click.echo(f"Removed {what}{where}; {written} its name, revision and kind.")
