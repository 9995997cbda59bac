"""The `articlegen` command line: parse, call the library, render.

This is the one place where errors become messages: an `ArticlegenError` is printed as
``Error: <message>`` on stderr with exit code 1; usage errors exit 2 (click's convention).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from articlegen import __version__
from articlegen.errors import ArticlegenError, InputError
from articlegen.importing import ImportReport, import_prompts_csv
from articlegen.output import FORMATS, render
from articlegen.settings import Settings, load_settings
from db.migrate import current_revision, head_revision, upgrade
from db.models import Prompt, PromptStatus
from db.prompts import list_prompts
from db.session import Database
from generator.decoding import PresetCatalog, load_presets

__all__ = ["cli", "main"]

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class App:
    """What commands share, each part built on first use from the settings."""

    _settings: Settings | None = None
    _database: Database | None = None
    _presets: PresetCatalog | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    @property
    def database(self) -> Database:
        if self._database is None:
            self._database = Database.open(self.settings.database_url)
            self._closers.append(self._database.close)
        return self._database

    @property
    def presets(self) -> PresetCatalog:
        if self._presets is None:
            self._presets = load_presets(self.settings.presets_file)
        return self._presets

    def close(self) -> None:
        for close in self._closers:
            close()


class _Group(click.Group):
    """A command group that turns our errors into messages, for itself and every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ArticlegenError as exc:
            raise click.ClickException(str(exc)) from None


pass_app = click.make_pass_decorator(App)
_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def format_option(func: Callable[P, R]) -> Callable[P, R]:
    """The `--format` option every list and show command shares."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="Output format: an aligned table, CSV, or JSON (an array of objects).",
    )(func)


@click.group("articlegen", cls=_Group, context_settings=_CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="articlegen")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Generate articles from topic prompts with Hugging Face models, orchestrated by Prefect.

    Settings come from ARTICLEGEN_* environment variables (see the README); the database is
    ARTICLEGEN_DATABASE_URL, by default the SQLite file articlegen.db here.

    Example: articlegen import examples/prompts.csv
    """
    app = ctx.ensure_object(App)
    ctx.call_on_close(app.close)


# --- db ---------------------------------------------------------------------------------------


@cli.group(cls=_Group, context_settings=_CONTEXT)
def db() -> None:
    """Manage the database schema.

    Example: articlegen db upgrade
    """


@db.command("upgrade")
@pass_app
def db_upgrade(app: App) -> None:
    """Create or migrate the schema to the newest revision (also done on first use).

    The database is ARTICLEGEN_DATABASE_URL, e.g. postgresql://me@localhost/articles.

    Example: articlegen db upgrade
    """
    database = Database.open(app.settings.database_url, migrate=False)
    try:
        before = current_revision(database.engine)
        upgrade(database.engine)
    finally:
        database.close()
    if before == head_revision():
        click.echo(f"{database.url} is up to date (revision {before}).")
    else:
        click.echo(f"{database.url} upgraded from {before or 'empty'} to {head_revision()}.")


# --- import -----------------------------------------------------------------------------------


@cli.command("import", context_settings=_CONTEXT)
@click.argument("file", type=click.Path(path_type=Path, dir_okay=True))
@click.option("--dry-run", is_flag=True, help="Validate and count; write nothing.")
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Import the valid rows and write the invalid ones, with a reason, to the rejects file "
    "(default: all or nothing).",
)
@click.option(
    "--rejects",
    "rejects_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where --skip-invalid writes rejected rows  [default: FILE.rejects.csv beside FILE]",
)
@pass_app
def import_(
    app: App, file: Path, dry_run: bool, skip_invalid: bool, rejects_path: Path | None
) -> None:
    """Import topic prompts from a CSV file into the database.

    Columns: `topic` (required); optional prompt, external_id, template, preset, tags, priority,
    variants; any decoding setting by its name (temperature, top_p, max_new_tokens, seed,
    noise_sigma, ...); and client fields prefixed `x_`, kept for templates. Rows with a known
    external_id update their prompt while it is still pending. By default one invalid row
    rejects the whole file and nothing is written.

    Example: articlegen import examples/prompts.csv --dry-run
    """
    if rejects_path is not None and not skip_invalid:
        raise click.UsageError("--rejects only applies with --skip-invalid")
    report = import_prompts_csv(
        app.database,
        file,
        app.presets,
        dry_run=dry_run,
        skip_invalid=skip_invalid,
        rejects_path=rejects_path,
    )
    _print_report(report, app.database.url)


def _print_report(report: ImportReport, url: str) -> None:
    for warning in report.warnings:
        click.echo(f"Warning: {report.path}, {warning}", err=True)
    verb = "would import" if report.dry_run else "imported"
    click.echo(
        f"{report.path}: {verb} into {url}: {report.inserted} inserted, {report.updated} "
        f"updated, {report.unchanged} unchanged, {report.rejected} rejected."
    )
    if report.kept_processed:
        click.echo(
            f"{report.kept_processed} of the unchanged rows differ from prompts that were "
            "already claimed or generated; those prompts are kept as they are."
        )
    if report.rejects_path is not None:
        where = "would go to" if report.dry_run else "written to"
        click.echo(f"Rejected rows {where} {report.rejects_path}.")
    if report.dry_run:
        click.echo("Dry run: nothing was written.")


# --- prompts ----------------------------------------------------------------------------------


@cli.group(cls=_Group, context_settings=_CONTEXT)
def prompts() -> None:
    """Inspect imported prompts.

    Example: articlegen prompts list --status pending
    """


def _prompt_record(prompt: Prompt) -> dict[str, Any]:
    return {
        "id": prompt.id,
        "external_id": prompt.external_id,
        "topic": prompt.topic,
        "status": prompt.status,
        "priority": prompt.priority,
        "variants": prompt.variants,
        "preset": prompt.preset,
        "template": prompt.template,
        "tags": prompt.tags,
        "decoding": prompt.decoding,
        "extra": prompt.extra,
        "prompt": prompt.prompt,
        "attempts": prompt.attempts,
        "last_error": prompt.last_error,
        "created_at": prompt.created_at,
        "updated_at": prompt.updated_at,
    }


@prompts.command("list")
@click.option(
    "--status",
    type=click.Choice([s.value for s in PromptStatus]),
    help="Only prompts in this status.",
)
@click.option("--limit", type=click.IntRange(min=1), help="At most this many prompts.")
@format_option
@pass_app
def prompts_list(app: App, status: str | None, limit: int | None, fmt: str) -> None:
    """List prompts in the order they will run: highest priority first, then oldest.

    Example: articlegen prompts list --status pending --format json
    """
    with app.database.session(write=False) as session:
        rows = list_prompts(session, PromptStatus(status) if status else None, limit)
        records = [_prompt_record(p) for p in rows]
    columns = ["id", "external_id", "topic", "status", "priority", "variants", "preset", "tags"]
    click.echo(render(records, fmt, table_columns=columns, empty="No prompts."))


# --- presets ----------------------------------------------------------------------------------


@cli.group(cls=_Group, context_settings=_CONTEXT)
def presets() -> None:
    """Inspect decoding presets (bundled, plus ARTICLEGEN_PRESETS_FILE).

    Example: articlegen presets list
    """


@presets.command("list")
@format_option
@pass_app
def presets_list(app: App, fmt: str) -> None:
    """List the decoding presets a prompt's `preset` column may name.

    Example: articlegen presets list --format json
    """
    records = [
        {"name": p.name, "settings": dict(p.values), "description": p.description}
        for p in app.presets
    ]
    click.echo(render(records, fmt, table_columns=["name", "settings", "description"]))


# --- preview ----------------------------------------------------------------------------------


def _parse_overrides(pairs: tuple[str, ...]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise click.UsageError(
                f"--set takes NAME=VALUE, e.g. --set temperature=0.8; got {pair!r}"
            )
        overrides[name.strip()] = value.strip()
    return overrides


@cli.command("preview", context_settings=_CONTEXT)
@click.argument("topic")
@click.option("--prompt", help="Text for the model to continue  [default: from prompt.txt.j2]")
@click.option("--preset", help="Decoding preset (articlegen presets list)  [default: nucleus]")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override one decoding setting, e.g. --set temperature=0.8; repeatable.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0, max=2**63 - 1),
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
    preset: str | None,
    overrides: tuple[str, ...],
    seed: int | None,
    template: str | None,
    fmt: str,
) -> None:
    """Write one article with the configured model and print it; the database is not touched.

    The model is ARTICLEGEN_MODEL (see `articlegen model init` when the Hub is out of reach).
    A summary (words, tokens, perplexity, flags, seed) goes to stderr.

    Example: articlegen preview "Night trains in Europe" --preset precise --set max_new_tokens=120
    """
    # Imported here: torch and transformers take seconds to import, and most commands need
    # neither.
    from generator.articles import ArticleFailure, ArticleInput, ArticleWriter
    from generator.decoding import DEFAULT_PRESET, DecodingWarning
    from generator.engine import Engine, derive_seed, fresh_seed
    from generator.loading import ModelSpec, load_model
    from generator.templates import Templates

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DecodingWarning)
        config = app.presets.resolve(preset, _parse_overrides(overrides))
    for warning in caught:
        click.echo(f"Warning: {warning.message}", err=True)
    if seed is None:
        seed = derive_seed(config.seed, topic) if config.seed is not None else fresh_seed()
    settings = app.settings
    templates = Templates(settings.templates_dir)
    loaded = load_model(
        ModelSpec(settings.model, settings.model_revision, settings.device, settings.dtype)
    )
    writer = ArticleWriter(Engine(loaded, batch_size=1), templates)
    item = ArticleInput(
        key=0,
        topic=topic,
        decoding=config,
        seed=seed,
        preset=preset or DEFAULT_PRESET,
        prompt=prompt,
        template=template,
    )
    (outcome,), _ = writer.write([item])
    if isinstance(outcome, ArticleFailure):
        raise InputError(f"could not write the article: {outcome.reason}")
    click.echo(outcome.rendered[fmt], nl=False)
    metrics = outcome.metrics
    perplexity = f"{metrics.perplexity:.1f}" if metrics.perplexity is not None else "n/a"
    click.echo(
        f"{metrics.word_count} words, {outcome.generation.tokens_generated} tokens "
        f"({outcome.generation.finish_reason}), perplexity {perplexity}, "
        f"flags: {', '.join(metrics.flags) or 'none'}; model {loaded.name} @ "
        f"{loaded.revision[:19]}, seed {seed}",
        err=True,
    )


# --- model ------------------------------------------------------------------------------------


@cli.group(cls=_Group, context_settings=_CONTEXT)
def model() -> None:
    """Build local models (for tests, benchmarks and machines without the Hub).

    Example: articlegen model init ./models/tiny
    """


@model.command("init")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--size",
    type=click.Choice(["tiny", "small"]),
    default="tiny",
    show_default=True,
    help="tiny: 2 layers, for tests. small: GPT-2 small's shape (124M parameters), for benchmarks.",
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
    download. Point ARTICLEGEN_MODEL at the directory to use it.

    Example: articlegen model init ./models/tiny --size tiny
    """
    # Imported here: torch and transformers take seconds to import, and most commands need
    # neither.
    from generator.model_init import init_model

    report = init_model(directory, size=size, corpus=corpus, seed=seed)  # type: ignore[arg-type]
    click.echo(
        f"Wrote a random {report.size} GPT-2 ({report.parameters:,} parameters, "
        f"{report.vocabulary:,}-token vocabulary) to {report.path}. Use it with "
        f"ARTICLEGEN_MODEL={report.path}"
    )


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="articlegen")
