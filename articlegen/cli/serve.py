"""`articlegen serve`: the flows as Prefect deployments, on a schedule and on demand."""

from __future__ import annotations

import click

from articlegen.cli.base import CONTEXT, App, cli, pass_app
from articlegen.cli.prefect_env import quiet_prefect
from articlegen.core.errors import ConfigError

__all__: list[str] = []


@cli.command("serve", context_settings=CONTEXT)
@pass_app
def serve(app: App) -> None:
    """Serve the flows as Prefect deployments until stopped (Ctrl-C or SIGTERM).

    generate-articles/articlegen runs on ARTICLEGEN_SCHEDULE (default hourly);
    import-prompts/articlegen and fine-tune-model/articlegen run when started. Point
    PREFECT_API_URL at a Prefect server (`prefect server start`) to see them in its UI and
    start runs with custom parameters.

    Example: articlegen serve
    """
    quiet_prefect("WARNING")  # a long-running server: keep Prefect's warnings
    # Imported here: Prefect takes seconds to import, and most commands never need it.
    from prefect import serve as prefect_serve
    from prefect.deployments.runner import RunnerDeployment

    from articlegen.flows import fine_tune_model, generate_articles, import_prompts

    schedule = app.settings.schedule
    try:
        deployments = [
            generate_articles.to_deployment(name="articlegen", cron=schedule),
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
    prefect_serve(*deployments)  # type: ignore[arg-type]
