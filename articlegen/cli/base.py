"""The `articlegen` command group and what its commands share: settings, database, presets.

This is the one place where errors become messages: an `ArticlegenError` is printed as
``Error: <message>`` on stderr with exit code 1; usage errors exit 2 (click's convention).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import click

from articlegen import __version__, runner
from articlegen.errors import ArticlegenError
from articlegen.output import FORMATS
from articlegen.settings import Settings, load_settings
from db.session import Database
from generator.decoding import PresetCatalog, load_presets

__all__ = [
    "CONTEXT",
    "App",
    "Group",
    "cli",
    "format_option",
    "main",
    "parse_overrides",
    "pass_app",
]

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class App:
    """What commands share, each part built on first use from the settings."""

    _settings: Settings | None = None
    _database: Database | None = None
    _presets: PresetCatalog | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    @property
    def database(self) -> Database:
        # The runner's per-process database: a command and the run it starts in-process
        # share one engine.
        if self._database is None:
            self._database = runner.database(self.settings.database_url)
            self._closers.append(runner.close_databases)
        return self._database

    @property
    def presets(self) -> PresetCatalog:
        if self._presets is None:
            self._presets = load_presets(self.settings.presets_file)
        return self._presets

    def close(self) -> None:
        for close in self._closers:
            close()


class Group(click.Group):
    """A command group that turns our errors into messages, for itself and every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ArticlegenError as exc:
            raise click.ClickException(str(exc)) from None


pass_app = click.make_pass_decorator(App)
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def format_option(func: Callable[P, R]) -> Callable[P, R]:
    """The `--format` option every list and show command shares."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="Output format: an aligned table, CSV, or JSON (an array of objects).",
    )(func)


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


def parse_overrides(pairs: tuple[str, ...]) -> dict[str, str]:
    """`--set NAME=VALUE` options as a dict; validation is the decoding config's job."""
    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise click.UsageError(
                f"--set takes NAME=VALUE, e.g. --set temperature=0.8; got {pair!r}"
            )
        overrides[name.strip()] = value.strip()
    return overrides


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="articlegen")
