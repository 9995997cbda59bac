"""`articlegen serve`: the flows as Prefect deployments, on a schedule, on new prompts and on
demand."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import click

from articlegen.cli.base import CONTEXT, App, cli, pass_app
from articlegen.cli.prefect_env import quiet_prefect
from articlegen.core.errors import ConfigError
from articlegen.core.settings import Settings
from articlegen.db.backends import parse_url
from articlegen.importing import PROMPTS_IMPORTED, database_identity, resource_id

if TYPE_CHECKING:
    from prefect.events import DeploymentEventTrigger

__all__: list[str] = []


@cli.command("serve", context_settings=CONTEXT)
@click.option(
    "--no-trigger",
    is_flag=True,
    help="Imports don't start runs: generate-articles runs on its schedule and when started.",
)
@pass_app
def serve(app: App, no_trigger: bool) -> None:
    """Serve the flows as Prefect deployments until stopped (Ctrl-C or SIGTERM).

    generate-articles/articlegen runs on ARTICLEGEN_SCHEDULE (default hourly) and, unless
    --no-trigger, ARTICLEGEN_TRIGGER_SECONDS (default 30) after prompts are imported into
    this database: imports in that time join the same run, which takes every pending prompt.
    import-prompts/articlegen and fine-tune-model/articlegen run when started. Point
    PREFECT_API_URL at a Prefect server (`prefect server start`), here and where you import,
    to see them in its UI, start runs with custom parameters and have imports start runs.

    Example: articlegen serve
    """
    quiet_prefect("WARNING")  # a long-running server: keep Prefect's warnings
    # Imported here: Prefect takes seconds to import, and most commands never need it.
    from prefect import serve as prefect_serve
    from prefect.deployments.runner import RunnerDeployment

    from articlegen.flows import fine_tune_model, generate_articles, import_prompts

    settings = app.settings
    schedule = settings.schedule
    try:
        deployments = [
            generate_articles.to_deployment(
                name="articlegen",
                cron=schedule,
                # Built each start: Prefect replaces the deployment's triggers, or drops them.
                triggers=None if no_trigger else [_imports_trigger(settings)],
            ),
            import_prompts.to_deployment(name="articlegen"),
            fine_tune_model.to_deployment(name="articlegen"),
        ]
    except ValueError as exc:
        raise ConfigError(
            f"ARTICLEGEN_SCHEDULE={schedule!r} is not a cron schedule: use five fields, e.g. "
            "'0 * * * *' for hourly or '30 2 * * *' for 02:30 every night"
        ) from exc
    assert all(isinstance(d, RunnerDeployment) for d in deployments)  # the sync API
    click.echo(
        f"Serving generate-articles (cron {schedule!r}), import-prompts and fine-tune-model; "
        "Ctrl-C stops."
    )
    if not no_trigger:
        click.echo(
            f"generate-articles also runs {settings.trigger_seconds} s after prompts are "
            f"imported into {database_identity(parse_url(settings.database_url))}; imports "
            "in between join that run."
        )
    prefect_serve(*deployments)  # type: ignore[arg-type]


def _imports_trigger(settings: Settings) -> DeploymentEventTrigger:
    """A run on the first import event, `trigger_seconds` later; the events that follow in
    that time start nothing of their own.

    Prefect's reactive trigger fires on the first event and ignores the rest of its `within`
    window. The run, scheduled `schedule_after` the same time later, claims its prompts after
    every import of that window was committed, so one run takes the whole burst and none is
    left waiting for the cron schedule. A run started so has the deployment's default
    parameters: every pending prompt.
    """
    from prefect.events import DeploymentEventTrigger

    wait = timedelta(seconds=settings.trigger_seconds)
    return DeploymentEventTrigger(
        name="articlegen-new-prompts",
        description="New prompts were imported into articlegen's database: generate them.",
        expect={PROMPTS_IMPORTED},
        match={"prefect.resource.id": resource_id(parse_url(settings.database_url))},
        threshold=1,
        within=wait,
        schedule_after=wait,
    )
