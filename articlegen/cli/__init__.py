"""The `articlegen` command line: parse, call the library, render.

`base` holds the group and what commands share, `options` the option bundles, `output` the
table/CSV/JSON rendering; each other module adds one family of commands.
"""

from articlegen.cli import (  # noqa: F401  (registers the commands)
    articles,
    config,
    data,
    demo,
    generate,
    jobs,
    models,
    review,
    serve,
    training,
    web,
)
from articlegen.cli.base import cli, main

__all__ = ["cli", "main"]
