"""The `articlegen` command line: parse, call the library, render.

`base` holds the group and what commands share; each other module adds one family of commands.
"""

from articlegen.cli import data, demo, models, review, runs  # noqa: F401  (registers the commands)
from articlegen.cli.base import cli, main

__all__ = ["cli", "main"]
