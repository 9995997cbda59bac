"""`articlegen demo`: the main job end to end on the bundled examples (what `make demo` runs)."""

from __future__ import annotations

from dataclasses import replace
from importlib.resources import files
from pathlib import Path
from typing import Literal

import click

from articlegen.cli.base import CONTEXT, App, cli, pass_app
from articlegen.cli.generate import generate
from articlegen.cli.output import render
from articlegen.cli.training import run_training
from articlegen.core.config_file import set_setting
from articlegen.core.errors import ArticlegenError
from articlegen.core.settings import config_path
from articlegen.db import registry
from articlegen.db.articles import list_articles
from articlegen.db.models import RegisteredModel
from articlegen.export import article_columns, article_record, export_articles
from articlegen.importing import import_prompts_csv
from articlegen.training.starter import (
    CORPUS_NAME,
    DEMO_RECIPE,
    STARTER_NAME,
    StarterRecipe,
    prepare_starter,
)
from articlegen.training.store import remove_model

__all__: list[str] = []

EXAMPLES = Path(str(files("articlegen.examples") / "prompts.csv"))
# Enough words to read, few enough that GPT-2 on two CPU cores finishes in minutes.
DEMO_TOKENS = 120


def _choose_model(app: App, recipe: StarterRecipe) -> str:
    """The configured model if one is set (articlegen.toml or ARTICLEGEN_MODEL); else gpt2 when
    cached or the Hub answers; else the starter model, trained here on its first run and
    recorded in articlegen.toml so later commands use it too."""
    from articlegen.generator.loading import hub_model_available

    configured = app.settings.model
    chosen = "model" in app.settings.model_fields_set
    if configured != STARTER_NAME and (chosen or hub_model_available(configured)):
        return configured
    if not chosen:
        click.echo(
            f"The Hugging Face Hub can't be reached and {configured} is not cached: using "
            f"{STARTER_NAME}, a small model trained here on English that ships with Python.",
            err=True,
        )
    _get_starter(app, recipe)
    with app.database.session(write=False) as session:
        row = registry.get_model(session, STARTER_NAME)
        click.echo(_banner(row), err=True)
    if chosen:
        return STARTER_NAME  # already recorded (or set for this command)
    set_setting("model", STARTER_NAME)
    click.echo(
        f'Recorded model = "{STARTER_NAME}" in {config_path()}: generate, serve and web use it '
        "from now on (`articlegen config unset model` goes back to gpt2).",
        err=True,
    )
    return STARTER_NAME


def _get_starter(app: App, recipe: StarterRecipe) -> None:
    """Reuse, continue or train the starter model; a run that cannot be continued is started
    again."""
    plan = prepare_starter(app.context, recipe)
    if plan.note:
        click.echo(plan.note, err=True)
    if plan.action == "resume":
        try:
            run_training(app, STARTER_NAME, None)
            return
        except ArticlegenError as exc:
            click.echo(f"It could not be continued ({exc}): training it again.", err=True)
            remove_model(app.context, STARTER_NAME)
            plan = prepare_starter(app.context, recipe)
            if plan.note:
                click.echo(plan.note, err=True)
    if plan.action == "train":
        run_training(app, STARTER_NAME, plan.params)


def _banner(row: RegisteredModel) -> str:
    """What the starter model is, in numbers, and what to expect of it."""
    epochs = {e["epoch"]: e for e in row.epochs}
    best, start = epochs.get(row.best_epoch or max(epochs, default=0), {}), epochs.get(0, {})
    parameters = row.hyperparameters.get("parameters", 0)
    trained = len(epochs) - 1  # epoch 0 is the random weights, measured
    characters = row.corpus.get("characters", 0)
    line = "=" * 78
    return (
        f"{line}\nNOTE: {STARTER_NAME} is a {parameters / 1e6:.1f}M-parameter GPT-2 trained from "
        f"scratch here, {trained} epoch{'' if trained == 1 else 's'}\n"
        f"over {characters / 1e3:,.0f} thousand "
        f"characters of {CORPUS_NAME}\n(eval perplexity {best.get('eval_perplexity', 0):.1f}; "
        f"{start.get('eval_perplexity', 0):.1f} with its random starting weights).\n"
        "Expect English-like text about programming, not good articles. For real ones:\n"
        "`articlegen config set model DIR` (a model directory), or, where the Hub can be\n"
        f"reached, `articlegen config unset model` (gpt2).\n{line}"
    )


@cli.command("demo", context_settings=CONTEXT)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("out"),
    show_default=True,
    help="Where the exports go.",
)
# A smaller starter training, for tests and quick tries: hidden, the demo's own is the point.
@click.option(
    "--starter-size", type=click.Choice(["tiny", "mini"]), default=DEMO_RECIPE.size, hidden=True
)
@click.option("--starter-documents", type=click.IntRange(min=2), default=None, hidden=True)
@click.option(
    "--starter-epochs", type=click.IntRange(1, 20), default=DEMO_RECIPE.epochs, hidden=True
)
@click.pass_context
@pass_app
def demo(
    app: App,
    ctx: click.Context,
    out: Path,
    starter_size: Literal["tiny", "mini"],
    starter_documents: int | None,
    starter_epochs: int,
) -> None:
    """Import examples/prompts.csv, generate every article, export them, and show the result.

    The model is the configured one if set (`articlegen config set model`, or ARTICLEGEN_MODEL);
    else gpt2 when it is cached or the Hub answers; else demo-english, a small GPT-2 the demo
    trains from scratch on its first run (about two minutes on two cores) on Python's own
    documentation, registered, reused, and recorded in articlegen.toml for later commands.

    Example: articlegen demo --out out
    """
    recipe = replace(
        DEMO_RECIPE, size=starter_size, documents=starter_documents, epochs=starter_epochs
    )
    model = _choose_model(app, recipe)
    report = import_prompts_csv(app.database, EXAMPLES, app.presets)
    click.echo(f"Imported {EXAMPLES.name}: {report.inserted} new, {report.unchanged} unchanged.")
    ctx.invoke(generate, model=model, max_new_tokens=DEMO_TOKENS)
    with app.database.session(write=False) as session:
        records = [article_record(a) for a in list_articles(session)]
    templates = app.templates
    export_articles(records, "csv", out / "articles.csv", templates)
    export_articles(records, "md", out / "md", templates)
    export_articles(records, "html", out / "html", templates)
    columns = article_columns(records)
    click.echo(render(records, "table", table_columns=columns, empty="No articles."))
    others = sorted({str(r["model"]) for r in records} - {STARTER_NAME})
    if model == STARTER_NAME and others:
        # An earlier demo's articles (its random model's noise, say) stay until removed.
        click.echo(
            f"Note: some of these articles were written before, by {', '.join(others)}; "
            "`make clean` (or a new ARTICLEGEN_DATABASE_URL) starts afresh.",
            err=True,
        )
    click.echo(
        f"\n{len(records)} articles exported to {out}/ (articles.csv, md/, html/index.html).\n"
        "Next:\n"
        "  articlegen articles show 1                  # read one, with its metadata\n"
        '  articlegen review approve 1 2 --note "ok"    # approve for export\n'
        '  articlegen review reject 3 --reason "..."    # or reject\n'
        "  articlegen review regenerate 3 --preset precise\n"
        "  articlegen export --format html --out out/approved\n"
        "Review them in the browser:\n"
        "  articlegen reviewers add $USER              # prints your password, once\n"
        "  articlegen web                             # then open http://127.0.0.1:8000"
    )
