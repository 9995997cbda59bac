"""The `articlegen` command group and what its commands share: the settings and the run
context (database, presets, templates) built from them once.

This is the one place where errors become messages: an `ArticlegenError` is printed as
``Error: <message>`` on stderr with exit code 1; usage errors exit 2 (click's convention).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import click

from articlegen import __version__
from articlegen.core.errors import ArticlegenError
from articlegen.core.settings import Settings, load_settings, unknown_variables
from articlegen.db import Database
from articlegen.generator.presets import PresetCatalog
from articlegen.generator.templates import Templates
from articlegen.runs.context import RunContext, context_for

__all__ = ["CONTEXT", "App", "Group", "cli", "main", "pass_app"]


@dataclass
class App:
    """What commands share, each part built on first use from the settings."""

    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        """The ARTICLEGEN_* settings, read once."""
        if self._settings is None:
            # Said first, once per command: a misspelt name may be why a setting below fails.
            for warning in unknown_variables(os.environ):
                click.echo(f"Warning: {warning}", err=True)
            self._settings = load_settings()
        return self._settings

    @property
    def context(self) -> RunContext:
        """The process's run context for these settings."""
        # The runs' own per-process context: a command and the run it starts in-process share
        # one database engine, one preset catalogue, one template environment.
        return context_for(self.settings)

    @property
    def database(self) -> Database:
        """The application database, opened once."""
        return self.context.database

    @property
    def presets(self) -> PresetCatalog:
        """The decoding presets, read once."""
        return self.context.presets

    @property
    def templates(self) -> Templates:
        """The one template environment."""
        return self.context.templates

    def close(self) -> None:
        """Close what this command opened."""
        # This command's context alone: another one in this process (a test's, a web app's)
        # stays open for its owner to close.
        if self._settings is not None:
            self.context.close()


class Group(click.Group):
    """A command group that turns our errors into messages, for itself and every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ArticlegenError as exc:
            raise click.ClickException(str(exc)) from None


pass_app = click.make_pass_decorator(App)
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group("articlegen", cls=Group, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="articlegen")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Generate articles from topic prompts with Hugging Face models, orchestrated by Prefect.

    Settings come from ARTICLEGEN_* environment variables (see the README); the database is
    ARTICLEGEN_DATABASE_URL, by default the SQLite file articlegen.db here.

    Example: articlegen import examples/prompts.csv
    """
    app = ctx.ensure_object(App)
    ctx.call_on_close(app.close)


def main() -> None:
    """Console-script entry point."""
    # articlegen's own warnings (a lease that could not be renewed, say) reach the terminal
    # through a handler of ours: Prefect's, which the root logger has, is quieted for commands.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("Warning: %(message)s"))
    own = logging.getLogger("articlegen")
    own.addHandler(handler)
    own.setLevel(logging.WARNING)
    own.propagate = False
    cli(prog_name="articlegen")
