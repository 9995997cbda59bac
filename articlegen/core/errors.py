"""The one exception tree of articlegen.

Every error a user can cause, or can fix, is an `ArticlegenError`; the CLI catches that base class
once, prints ``Error: <message>`` and exits 1. Anything else reaching the CLI is a bug and keeps
its traceback.

    ArticlegenError
    ├── ConfigError          a setting, preset or decoding configuration is invalid
    ├── InputError           a file or value handed to us cannot be used
    │   └── ImportRejected   a CSV import found invalid rows; nothing was written
    ├── NotFoundError        an id or name given by the user does not exist
    ├── JobStateError        a job can't do that in its state (resume a running job, ...)
    ├── ConflictError        an article changed since it was read (another editor acted)
    ├── DatabaseError        the database cannot be reached, migrated or written
    ├── ModelError           a model or tokenizer cannot be loaded or built
    ├── TemplateError        a Jinja template is missing, broken, or needs a missing variable
    └── PromptsFailed        a generation run finished, but some of its prompts failed

Messages say what happened and what to do, naming the file, row, field or value at fault.
"""

from __future__ import annotations

__all__ = [
    "ArticlegenError",
    "ConfigError",
    "ConflictError",
    "DatabaseError",
    "ImportRejected",
    "InputError",
    "JobStateError",
    "ModelError",
    "NotFoundError",
    "PromptsFailed",
    "TemplateError",
]


class ArticlegenError(Exception):
    """Base of every error that is the user's to fix; its message is shown as is."""


class ConfigError(ArticlegenError):
    """Raised when a setting, a preset file or a decoding configuration is invalid."""


class InputError(ArticlegenError):
    """Raised when a file or value handed to us cannot be read or used (not UTF-8, empty, ...)."""


class ImportRejected(InputError):
    """Raised when a CSV import has invalid rows and runs all-or-nothing: nothing was written.

    `problems` holds one line per offending row and field, already phrased for the user.
    """

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems


class NotFoundError(ArticlegenError):
    """Raised when an id or name given by the user (prompt, job, preset) does not exist."""


class JobStateError(ArticlegenError):
    """Raised when a job is asked for what its state rules out: resuming a job that is still
    running or has completed, cancelling one that has ended."""


class ConflictError(ArticlegenError):
    """Raised when a review action finds its article changed since the reviewer read it
    (another editor acted first); the message says who and when, and nothing was written."""


class DatabaseError(ArticlegenError):
    """Raised when the database cannot be reached, migrated or written.

    Messages show the database URL with its password hidden.
    """


class ModelError(ArticlegenError):
    """Raised when a model or tokenizer cannot be loaded (offline, missing files) or built."""


class TemplateError(ArticlegenError):
    """Raised when a template is missing, has a syntax error, or uses an undefined variable.

    The message names the template and, where Jinja knows it, the line.
    """


class PromptsFailed(ArticlegenError):
    """The outcome of a generation run that finished with failed prompts: its Prefect state is
    Failed (named CompletedWithErrors) and this is the state's data, so whoever asks the state
    for its result gets a message, and the run's result in `result`."""

    def __init__(self, message: str, result: object) -> None:
        super().__init__(message)
        self.result = result

    def __reduce__(self) -> tuple[type[PromptsFailed], tuple[str, object]]:
        # Both arguments, so a persisted state's data loads again (pickle, cloudpickle).
        return (PromptsFailed, (str(self), self.result))
