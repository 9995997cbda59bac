"""`articlegen config show|set|unset`: the project's settings file, articlegen.toml."""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import click

from articlegen.cli.base import CONTEXT, App, cli, pass_app
from articlegen.cli.options import format_option
from articlegen.cli.output import render
from articlegen.core.config_file import set_setting, settings_table, shown_value, unset_setting
from articlegen.core.settings import config_path, env_variable

__all__: list[str] = []


@cli.group("config", context_settings=CONTEXT)
def config() -> None:
    """Show and change the project's settings, kept in articlegen.toml in this directory.

    Every command, `serve` and its deployment runs read that file; an ARTICLEGEN_* environment
    variable overrides it. ARTICLEGEN_CONFIG names another file.

    Example: articlegen config set model ./models/my-model
    """


@config.command("show", context_settings=CONTEXT)
@format_option
@pass_app
def show(app: App, fmt: str) -> None:
    """List every setting, its value and where it comes from (environment, file or default).

    Example: articlegen config show
    """
    rows = [asdict(row) for row in settings_table(app.settings)]
    columns = ["key", "value", "source"] if fmt == "table" else None
    click.echo(render(rows, fmt, table_columns=columns))
    if fmt == "table":
        click.echo(f"\nFile: {config_path()}", err=True)


@config.command("set", context_settings=CONTEXT)
@click.argument("key")
@click.argument("value")
def set_(key: str, value: str) -> None:
    """Record KEY = VALUE in the settings file, checked as the setting checks it.

    Example: articlegen config set model demo-english
    """
    stored = set_setting(key, value)
    shown = shown_value(key, stored) if key in ("web_secret", "database_url") else None
    click.echo(f"{config_path()}: {key} = {shown or json.dumps(stored)}")
    _shadowed(key)


@config.command("unset", context_settings=CONTEXT)
@click.argument("key")
def unset(key: str) -> None:
    """Remove KEY from the settings file: its default (or environment variable) applies again.

    Example: articlegen config unset model
    """
    if unset_setting(key):
        click.echo(f"{config_path()}: {key} removed.")
    else:
        click.echo(f"{config_path()} does not set {key}; nothing changed.")
    _shadowed(key)


def _shadowed(key: str) -> None:
    if os.environ.get(env_variable(key)):
        click.echo(
            f"Note: {env_variable(key)} is set in this environment and wins over the file.",
            err=True,
        )
