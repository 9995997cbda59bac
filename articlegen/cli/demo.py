"""`articlegen demo`: the main job end to end on the bundled examples (what `make demo` runs)."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

import click

from articlegen.cli.base import CONTEXT, App, cli, pass_app
from articlegen.cli.generate import generate
from articlegen.cli.output import render
from articlegen.db.articles import list_articles
from articlegen.export import ARTICLE_COLUMNS, article_record, export_articles
from articlegen.importing import import_prompts_csv

__all__: list[str] = []

EXAMPLES = Path(str(files("articlegen.examples") / "prompts.csv"))
DEMO_MODEL = Path("models/demo")
# Enough words to read, few enough that GPT-2 on two CPU cores finishes in minutes.
DEMO_TOKENS = 120


def _choose_model(configured: str, explicit: bool) -> str:
    """ARTICLEGEN_MODEL if set; else gpt2 when cached or the Hub answers; else a local model."""
    from articlegen.generator.loading import hub_model_available
    from articlegen.generator.model_init import init_model

    if explicit:
        return configured
    if hub_model_available(configured):
        return configured
    if not (DEMO_MODEL / "config.json").exists():
        init_model(DEMO_MODEL, size="tiny")
    banner = "=" * 78
    click.echo(
        f"{banner}\nNOTE: the Hugging Face Hub can't be reached and {configured} is not cached.\n"
        f"Using a LOCAL DEMO MODEL with RANDOM WEIGHTS ({DEMO_MODEL}): its articles are noise.\n"
        "Everything around the text is real. For real text, set ARTICLEGEN_MODEL to a model\n"
        f"directory, or run once where the Hub is reachable.\n{banner}",
        err=True,
    )
    return str(DEMO_MODEL)


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
    a local demo model built with `articlegen models init` (and the demo says so).

    Example: articlegen demo --out out
    """
    model = _choose_model(app.settings.model, "ARTICLEGEN_MODEL" in os.environ)
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
