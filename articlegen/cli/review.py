"""Commands for the client's side of the loop: review articles, then export them."""

from __future__ import annotations

from pathlib import Path

import click

from articlegen.cli.base import CONTEXT, App, Group, cli, parse_overrides, pass_app
from articlegen.export import EXPORT_FORMATS, export_articles
from articlegen.records import article_record
from db.articles import list_articles, queue_regeneration, review
from db.models import ArticleReviewStatus
from generator.templates import Templates

__all__: list[str] = []


@cli.group("review", cls=Group, context_settings=CONTEXT)
def review_group() -> None:
    """Approve, reject or regenerate articles.

    Example: articlegen review approve 3 4 --note "Good to publish"
    """


def _verdict(
    app: App, ids: tuple[int, ...], verdict: ArticleReviewStatus, note: str | None
) -> None:
    with app.database.session() as session:
        done = review(session, ids, verdict, note)
    click.echo(f"{verdict.value.capitalize()}: {', '.join(str(a.id) for a in done)}.")


@review_group.command("approve")
@click.argument("ids", nargs=-1, type=int, required=True)
@click.option("--note", help="A note kept with the verdict.")
@pass_app
def approve(app: App, ids: tuple[int, ...], note: str | None) -> None:
    """Approve articles for export.

    Example: articlegen review approve 3 4 --note "Good to publish"
    """
    _verdict(app, ids, ArticleReviewStatus.APPROVED, note)


@review_group.command("reject")
@click.argument("ids", nargs=-1, type=int, required=True)
@click.option("--reason", required=True, help="Why: kept as the reviewer's note.")
@pass_app
def reject(app: App, ids: tuple[int, ...], reason: str) -> None:
    """Reject articles, with a reason.

    Example: articlegen review reject 5 --reason "Off topic"
    """
    _verdict(app, ids, ArticleReviewStatus.REJECTED, reason)


@review_group.command("regenerate")
@click.argument("ids", nargs=-1, type=int, required=True)
@click.option("--preset", help="Decoding preset for the new version.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="NAME=VALUE",
    help="Decoding setting for the new version, e.g. --set temperature=0.7; repeatable.",
)
@pass_app
def regenerate(
    app: App, ids: tuple[int, ...], preset: str | None, overrides: tuple[str, ...]
) -> None:
    """Queue articles to be written again; the next `generate` adds a new version of each.

    The old versions stay. A preset or settings given here apply to the prompt from now on.

    Example: articlegen review regenerate 5 --preset precise --set temperature=0.7
    """
    settings = parse_overrides(overrides)
    # Validate now, against the preset the prompts will use, so the run meets no surprise.
    config = app.presets.resolve(preset, settings) if (preset or settings) else None
    typed = config.model_dump(mode="json", include=set(settings)) if config else {}
    with app.database.session() as session:
        prompts = queue_regeneration(session, ids, preset, typed)
    click.echo(
        f"Queued {len(ids)} article(s) of {len(prompts)} prompt(s) for a new version. "
        "Run `articlegen generate` to write them."
    )


@cli.command("export", context_settings=CONTEXT)
@click.option(
    "--status",
    type=click.Choice([*(s.value for s in ArticleReviewStatus), "all"]),
    default="approved",
    show_default=True,
    help="Which articles.",
)
@click.option("--job", "job_id", type=int, help="Only articles of this job.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(EXPORT_FORMATS),
    required=True,
    help="csv or jsonl: one file; md or html: a folder with a file per article and an index.",
)
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="File or folder to write."
)
@pass_app
def export(app: App, status: str, job_id: int | None, fmt: str, out: Path) -> None:
    """Export articles as CSV, JSON Lines, Markdown or HTML.

    CSV cells that a spreadsheet would run as formulas are prefixed with an apostrophe.

    Example: articlegen export --status approved --format html --out out/html
    """
    verdict = None if status == "all" else ArticleReviewStatus(status)
    with app.database.session(write=False) as session:
        records = [article_record(a) for a in list_articles(session, verdict, job_id)]
    written = export_articles(records, fmt, out, Templates(app.settings.templates_dir))  # type: ignore[arg-type]
    click.echo(f"Exported {len(records)} article(s) to {out} ({len(written)} file(s)).")
