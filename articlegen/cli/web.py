"""`articlegen web`, the review workspace, and `articlegen reviewers`, its accounts."""

from __future__ import annotations

import click

from articlegen.cli.base import CONTEXT, App, Group, cli, pass_app
from articlegen.cli.options import format_option
from articlegen.cli.output import render
from articlegen.db.models import ReviewerRole
from articlegen.db.reviewers import list_reviewers, remove_reviewer
from articlegen.review.accounts import add_account

__all__: list[str] = []


@cli.command("web", context_settings=CONTEXT)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. The default serves this machine alone; to serve a team, name "
    "this machine's private address and put the workspace behind HTTPS.",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@pass_app
def web(app: App, host: str, port: int) -> None:
    """Serve the review workspace, where editors read, compare, edit, approve, reject and
    regenerate articles in a browser. Accounts come from `articlegen reviewers add`.

    Example: articlegen web --port 8000
    """
    import uvicorn

    from articlegen.web import create_app

    workspace = create_app(app.settings)
    with app.database.session(write=False) as session:
        accounts = len(list_reviewers(session))
    click.echo(f"Review workspace at http://{host}:{port}/ (Ctrl-C stops).")
    if not accounts:
        click.echo("No reviewer accounts yet: `articlegen reviewers add NAME` makes one.", err=True)
    uvicorn.run(workspace, host=host, port=port, log_level="warning")


@cli.group(cls=Group, context_settings=CONTEXT)
def reviewers() -> None:
    """Accounts of the review workspace.

    Example: articlegen reviewers add maria --role editor
    """


@reviewers.command("add")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice([r.value for r in ReviewerRole]),
    default=ReviewerRole.EDITOR.value,
    show_default=True,
    help="editor: reviews and acts; viewer: reads only.",
)
@pass_app
def reviewers_add(app: App, name: str, role: str) -> None:
    """Add an account and print its generated password, once: only a hash of it is stored.

    Example: articlegen reviewers add maria --role editor
    """
    with app.database.session() as session:
        reviewer, password = add_account(session, name, ReviewerRole(role))
        name, role = reviewer.name, reviewer.role.value
    click.echo(f"Added {role} {name}. Password (shown once, keep it safe): {password}")


@reviewers.command("list")
@format_option
@pass_app
def reviewers_list(app: App, fmt: str) -> None:
    """List the accounts (never their passwords).

    Example: articlegen reviewers list
    """
    with app.database.session(write=False) as session:
        records = [
            {"name": r.name, "role": r.role, "created_at": r.created_at}
            for r in list_reviewers(session)
        ]
    click.echo(render(records, fmt, empty="No reviewers."))


@reviewers.command("remove")
@click.argument("name")
@pass_app
def reviewers_remove(app: App, name: str) -> None:
    """Remove an account; its past actions stay in the articles' histories.

    Example: articlegen reviewers remove maria
    """
    with app.database.session() as session:
        remove_reviewer(session, name)
    click.echo(f"Removed reviewer {name}.")
