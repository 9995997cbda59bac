"""Commands for the client's side of the loop: review articles, then export them."""

from __future__ import annotations

import getpass
from pathlib import Path

import click

from articlegen.cli.base import CONTEXT, App, Group, cli, pass_app
from articlegen.cli.options import (
    ARTICLE_ID,
    JOB_ID,
    preset_option,
    set_option,
    typed_overrides,
)
from articlegen.core.files import check_not_overwriting
from articlegen.db.articles import list_articles
from articlegen.db.models import ArticleReviewStatus
from articlegen.export import EXPORT_FORMATS, article_record, export_articles
from articlegen.review.actions import regenerate as queue_new_versions
from articlegen.review.actions import review_ids

__all__: list[str] = []


@cli.group("review", cls=Group, context_settings=CONTEXT)
def review_group() -> None:
    """Approve, reject or regenerate articles.

    Example: articlegen review approve 3 4 --note "Good to publish"
    """


def actor() -> str:
    """Who acts from the command line, for the audit trail: the operating system's user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return "cli"


def _verdict(
    app: App, ids: tuple[int, ...], verdict: ArticleReviewStatus, note: str | None
) -> None:
    with app.database.session() as session:
        done = review_ids(session, ids, verdict, actor(), note)
    click.echo(f"{verdict.value.capitalize()}: {', '.join(str(a.id) for a in done)}.")


@review_group.command("approve")
@click.argument("ids", nargs=-1, type=ARTICLE_ID, required=True)
@click.option("--note", help="A note kept with the verdict  [default: the article's own]")
@pass_app
def approve(app: App, ids: tuple[int, ...], note: str | None) -> None:
    """Approve articles for export; each id counts once. Recorded in each article's history
    under your user name.

    Example: articlegen review approve 3 4 --note "Good to publish"
    """
    _verdict(app, ids, ArticleReviewStatus.APPROVED, note)


@review_group.command("reject")
@click.argument("ids", nargs=-1, type=ARTICLE_ID, required=True)
@click.option("--reason", required=True, help="Why (not empty): kept as the reviewer's note.")
@pass_app
def reject(app: App, ids: tuple[int, ...], reason: str) -> None:
    """Reject articles, with a reason.

    Example: articlegen review reject 5 --reason "Off topic"
    """
    _verdict(app, ids, ArticleReviewStatus.REJECTED, reason)


@review_group.command("regenerate")
@click.argument("ids", nargs=-1, type=ARTICLE_ID, required=True)
@preset_option("Decoding preset for the new version.")
@set_option("Decoding setting for the new version, e.g. --set temperature=0.7; repeatable.")
@pass_app
def regenerate(
    app: App, ids: tuple[int, ...], preset: str | None, overrides: dict[str, str]
) -> None:
    """Queue articles to be written again; the next `generate` adds a new version of each.

    The old versions stay. A preset or settings given here apply to the prompt from now on.

    Example: articlegen review regenerate 5 --preset precise --set temperature=0.7
    """
    typed = typed_overrides(overrides)
    with app.database.session() as session:
        prompts = queue_new_versions(session, app.presets, ids, actor(), preset, typed)
    click.echo(
        f"Queued {len(set(ids))} article(s) of {prompts} prompt(s) for a new version. "
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
@click.option("--job", "job_id", type=JOB_ID, help="Only articles of this job.")
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

    CSV cells that a spreadsheet would run as formulas are prefixed with an apostrophe. Into a
    folder, md and html replace what an earlier export of theirs wrote there (articles no
    longer exported are removed); other files stay.

    Example: articlegen export --status approved --format html --out out/html
    """
    verdict = None if status == "all" else ArticleReviewStatus(status)
    if fmt in ("csv", "jsonl"):  # one file: never one of the database's
        check_not_overwriting(out, "export file", database=app.database.files)
    with app.database.session(write=False) as session:
        records = [article_record(a) for a in list_articles(session, verdict, job_id)]
    done = export_articles(records, fmt, out, app.templates)  # type: ignore[arg-type]
    removed = f"; removed {len(done.removed)} file(s) of an earlier export" if done.removed else ""
    click.echo(
        f"Exported {len(records)} article(s) to {out} ({len(done.written)} file(s)){removed}."
    )
