"""articlegen: batch article generation from topic prompts.

One installed name, floors whose imports only go down (`lint-imports` checks it):

    cli                                 the command line: parse, call the library, render
    web                                 the review workspace: the same, in a browser
    flows                               Prefect flows: orchestration only
    training                            fine-tuning on a run's models and the review's texts
    runs | importing | export | review  a run's steps | prompts in | articles out | reviewing
    generator | db                      models, decoding and templates | tables and queries
    core                                errors, settings, shared bounds, validation messages

`templates` and `examples` are package data, read through `importlib.resources`.
"""

from importlib.metadata import version

__version__ = version("articlegen")

__all__ = ["__version__"]
