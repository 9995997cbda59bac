"""Commands to read generated articles: list and show."""

from __future__ import annotations

import click

from articlegen.cli.base import CONTEXT, App, Group, cli, pass_app
from articlegen.cli.options import ARTICLE_ID, JOB_ID, format_option
from articlegen.cli.output import render, show
from articlegen.core.bounds import MAX_ID
from articlegen.db.articles import get_article, list_articles
from articlegen.db.models import ArticleReviewStatus
from articlegen.db.review import events_of
from articlegen.export.records import article_columns, article_record, event_record

__all__: list[str] = []


@cli.group(cls=Group, context_settings=CONTEXT)
def articles() -> None:
    """Inspect generated articles.

    Example: articlegen articles list --status pending_review
    """


@articles.command("list")
@click.option(
    "--status",
    type=click.Choice([s.value for s in ArticleReviewStatus]),
    help="Only articles with this review status.",
)
@click.option("--job", "job_id", type=JOB_ID, help="Only articles of this job.")
@click.option("--limit", type=click.IntRange(1, MAX_ID), help="At most this many.")
@format_option
@pass_app
def articles_list(
    app: App, status: str | None, job_id: int | None, limit: int | None, fmt: str
) -> None:
    """List articles, oldest first. Articles written by random weights (`models init`) say so
    in a `warning` column; CSV and JSON carry every field, `model_kind` among them.

    Example: articlegen articles list --job 1 --format csv
    """
    verdict = ArticleReviewStatus(status) if status else None
    with app.database.session(write=False) as session:
        records = [article_record(a) for a in list_articles(session, verdict, job_id, limit)]
    columns = article_columns(records)
    click.echo(render(records, fmt, table_columns=columns, empty="No articles."))


@articles.command("show")
@click.argument("article_id", type=ARTICLE_ID)
@format_option
@pass_app
def articles_show(app: App, article_id: int, fmt: str) -> None:
    """Show one article: the text as Markdown (the editor's, once edited), its metadata and
    its review history (table); or every field of it as one CSV row or JSON object, like the
    rows of `articles list`.

    Example: articlegen articles show 3 --format json
    """
    with app.database.session(write=False) as session:
        record = article_record(get_article(session, article_id))
        history = [event_record(e) for e in events_of(session, article_id)]
    if fmt != "table":
        click.echo(show(record, fmt))
        return
    if record["warning"]:
        # Before the text: whoever reads on must know it is noise.
        click.echo(f"WARNING: {record['warning']}\n")
    click.echo(record["markdown"] or record["body"])
    skip = {"body", "markdown", "html", "generated_body"}
    if not record["warning"]:
        skip.add("warning")  # no blank row for a real model's article
    click.echo(show({k: v for k, v in record.items() if k not in skip}, fmt))
    click.echo("\nHistory:")
    click.echo(render(history, fmt, empty="  no review yet"))
