"""Commands for data in: the schema, CSV imports, prompts and presets."""

from __future__ import annotations

from pathlib import Path

import click

from articlegen.cli.base import CONTEXT, App, Group, cli, pass_app
from articlegen.cli.events import announce_import
from articlegen.cli.options import JOB_ID, PROMPT_ID, format_option
from articlegen.cli.output import render
from articlegen.core.bounds import MAX_ID
from articlegen.db import Database
from articlegen.db.migrate import current_revision, head_revision, upgrade
from articlegen.db.models import PromptStatus
from articlegen.db.prompts import list_prompts
from articlegen.db.retry import name_prompts, requeue_failed
from articlegen.export.records import prompt_record
from articlegen.importing import ImportReport, import_prompts_csv

# --- db ---------------------------------------------------------------------------------------


@cli.group(cls=Group, context_settings=CONTEXT)
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


@cli.command("import", context_settings=CONTEXT)
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
    type=click.Path(path_type=Path),  # checked by the import, with the input in view
    help="Where --skip-invalid writes rejected rows  [default: FILE.rejects.csv beside FILE]",
)
@pass_app
def import_(
    app: App, file: Path, dry_run: bool, skip_invalid: bool, rejects_path: Path | None
) -> None:
    """Import topic prompts from a CSV file into the database.

    Columns: `topic` (required); optional prompt, external_id, template, preset, prompt_format
    (plain, chat or auto), system (a system message, chat form only), tags, priority, variants;
    any decoding setting by its name (temperature, top_p, max_new_tokens, seed, noise_sigma,
    ...); and client fields prefixed `x_`, kept for templates. Rows with a known
    external_id update their prompt while it is still pending. By default one invalid row
    rejects the whole file and nothing is written.

    With PREFECT_API_URL set, an import that writes prompts sends the Prefect event
    articlegen.prompts.imported, on which `articlegen serve` starts a run.

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
    warning = announce_import(app.database, report)
    if warning is not None:
        click.echo(f"Warning: {warning}", err=True)


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


@cli.group(cls=Group, context_settings=CONTEXT)
def prompts() -> None:
    """Inspect imported prompts, and retry failed ones.

    Example: articlegen prompts list --status pending
    """


@prompts.command("list")
@click.option(
    "--status",
    type=click.Choice([s.value for s in PromptStatus]),
    help="Only prompts in this status.",
)
@click.option("--limit", type=click.IntRange(1, MAX_ID), help="At most this many prompts.")
@format_option
@pass_app
def prompts_list(app: App, status: str | None, limit: int | None, fmt: str) -> None:
    """List prompts in the order they will run: highest priority first, then oldest.

    Example: articlegen prompts list --status pending --format json
    """
    with app.database.session(write=False) as session:
        rows = list_prompts(session, PromptStatus(status) if status else None, limit)
        records = [prompt_record(p) for p in rows]
    columns = ["id", "external_id", "topic", "status", "priority", "variants", "preset", "tags"]
    click.echo(render(records, fmt, table_columns=columns, empty="No prompts."))


@prompts.command("retry")
@click.argument("ids", nargs=-1, type=PROMPT_ID)
@click.option(
    "--job", "job_id", type=JOB_ID, help="The failed prompts whose last failure was in this job."
)
@click.option("--all-failed", is_flag=True, help="Every failed prompt.")
@pass_app
def prompts_retry(app: App, ids: tuple[int, ...], job_id: int | None, all_failed: bool) -> None:
    """Put failed prompts back in the queue; their error history stays. Named prompts must all
    be failed, or nothing is requeued. A prompt claimed ARTICLEGEN_MAX_ATTEMPTS times stays
    failed until that setting is raised.

    Example: articlegen prompts retry --job 3
    """
    if not (ids or job_id is not None or all_failed):
        raise click.UsageError("name failed prompts by id, or give --job J or --all-failed")
    with app.database.session() as session:
        done = requeue_failed(session, ids, job_id, all_failed, app.settings.max_attempts)
    if done.prompts:
        count = len(done.prompts)
        click.echo(
            f"Requeued {count} failed prompt{'' if count == 1 else 's'}; "
            "`articlegen generate` writes them."
        )
    else:
        click.echo("No failed prompts to requeue.")
    most = app.settings.max_attempts
    if done.exhausted:
        click.echo(
            f"Left failed: {name_prompts(done.exhausted)}, claimed as often as "
            f"ARTICLEGEN_MAX_ATTEMPTS={most} allows (raise it to retry them).",
            err=True,
        )
    if done.complete:
        click.echo(
            f"Left failed: {name_prompts(done.complete)}, with an article of every variant "
            "already (regenerate one from the review queue instead).",
            err=True,
        )


# --- presets ----------------------------------------------------------------------------------


@cli.group(cls=Group, context_settings=CONTEXT)
def presets() -> None:
    """Inspect decoding presets (bundled, plus ARTICLEGEN_PRESETS_FILE).

    Example: articlegen presets list
    """


@presets.command("list")
@format_option
@pass_app
def presets_list(app: App, fmt: str) -> None:
    """List the decoding presets a prompt's `preset` column may name, with their settings (a
    preset may also set `prompt_format` and `system`).

    Example: articlegen presets list --format json
    """
    records = [
        {"name": p.name, "settings": {**p.values, **p.style.fields()}, "description": p.description}
        for p in app.presets
    ]
    click.echo(render(records, fmt, table_columns=["name", "settings", "description"]))
