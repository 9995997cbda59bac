"""`articlegen demo`: the main job end to end on the bundled examples (what `make demo` runs)."""

from __future__ import annotations

import os
import shutil
from importlib.resources import files
from pathlib import Path

import click

from articlegen.cli.base import CONTEXT, App, cli, pass_app
from articlegen.cli.generate import generate
from articlegen.cli.output import render
from articlegen.cli.training import run_training
from articlegen.db import registry
from articlegen.db.articles import list_articles
from articlegen.db.models import ModelStatus
from articlegen.export import ARTICLE_COLUMNS, article_record, export_articles
from articlegen.importing import import_prompts_csv
from articlegen.training.starter import CORPUS_NAME, DEMO_RECIPE, STARTER_NAME, write_corpus
from articlegen.training.store import model_directory, remove_model

__all__: list[str] = []

EXAMPLES = Path(str(files("articlegen.examples") / "prompts.csv"))
# Enough words to read, few enough that GPT-2 on two CPU cores finishes in minutes.
DEMO_TOKENS = 120
# How the starter model is trained when there is no real model; tests train less.
RECIPE = DEMO_RECIPE


def _choose_model(app: App, configured: str, explicit: bool) -> str:
    """ARTICLEGEN_MODEL if set; else gpt2 when cached or the Hub answers; else the starter
    model, trained here on its first run."""
    from articlegen.generator.loading import hub_model_available

    if explicit or hub_model_available(configured):
        return configured
    click.echo(
        f"The Hugging Face Hub can't be reached and {configured} is not cached: using "
        f"{STARTER_NAME}, a small model trained here on English that ships with Python.",
        err=True,
    )
    _ensure_starter(app)
    with app.database.session(write=False) as session:
        row = registry.get_model(session, STARTER_NAME)
    trained = row.hyperparameters
    best = next(e for e in row.epochs if e["epoch"] == row.best_epoch)
    minutes = (row.finished_at - row.created_at).total_seconds() / 60 if row.finished_at else 0
    banner = "=" * 78
    click.echo(
        f"{banner}\nNOTE: {STARTER_NAME} is a {trained['parameters'] / 1e6:.1f}M-parameter GPT-2 "
        f"trained from scratch for {minutes:.1f} minutes on\n{row.corpus['characters'] / 1e3:,.0f} "
        f"thousand characters of {CORPUS_NAME}\n(eval perplexity {best['eval_perplexity']:.1f}; "
        f"{row.epochs[0]['eval_perplexity']:.1f} with its random starting weights).\n"
        "Expect English-like text about programming, not good articles. For real ones, set\n"
        f"ARTICLEGEN_MODEL to a model directory, or run once where the Hub is reachable.\n{banner}",
        err=True,
    )
    return STARTER_NAME


def _ensure_starter(app: App) -> None:
    """Train the starter model unless the registry has it ready: continue a run that stopped,
    and start again where its files are gone."""
    with app.database.session(write=False) as session:
        row = registry.find_model(session, STARTER_NAME)
    if row is not None and row.status is ModelStatus.READY and Path(row.source).is_dir():
        return
    if row is not None and row.status is not ModelStatus.READY:
        click.echo(f"Continuing the training of {STARTER_NAME} that stopped.", err=True)
        run_training(app, STARTER_NAME, None)
        return
    if row is not None:
        click.echo(f"{row.source} is gone: training {STARTER_NAME} again.", err=True)
        remove_model(app.context, STARTER_NAME)
    directory = model_directory(app.settings, STARTER_NAME)
    if directory.exists():
        # Files of an earlier demo that this database does not know (it was deleted, say).
        shutil.rmtree(directory)
    corpus = app.settings.models_dir / ".corpora" / "python-docs.txt"
    documents = write_corpus(corpus, RECIPE.documents)
    click.echo(
        f"Training {STARTER_NAME} once ({documents} documents of {CORPUS_NAME}); later runs "
        "reuse it.",
        err=True,
    )
    run_training(app, STARTER_NAME, RECIPE.params(corpus))


@cli.command("demo", context_settings=CONTEXT)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("out"),
    show_default=True,
    help="Where the exports go.",
)
@click.pass_context
@pass_app
def demo(app: App, ctx: click.Context, out: Path) -> None:
    """Import examples/prompts.csv, generate every article, export them, and show the result.

    The model is ARTICLEGEN_MODEL if set; else gpt2 when it is cached or the Hub answers; else
    demo-english, a small GPT-2 the demo trains from scratch on its first run (about two
    minutes on two cores) on Python's own documentation, registered and reused after that.

    Example: articlegen demo --out out
    """
    model = _choose_model(app, app.settings.model, "ARTICLEGEN_MODEL" in os.environ)
    report = import_prompts_csv(app.database, EXAMPLES, app.presets)
    click.echo(f"Imported {EXAMPLES.name}: {report.inserted} new, {report.unchanged} unchanged.")
    ctx.invoke(generate, model=model, max_new_tokens=DEMO_TOKENS)
    with app.database.session(write=False) as session:
        records = [article_record(a) for a in list_articles(session)]
    templates = app.templates
    export_articles(records, "csv", out / "articles.csv", templates)
    export_articles(records, "md", out / "md", templates)
    export_articles(records, "html", out / "html", templates)
    click.echo(render(records, "table", table_columns=ARTICLE_COLUMNS, empty="No articles."))
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
