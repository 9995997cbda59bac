"""Persistence: the engine and sessions, the tables, migrations, and the use-case queries.

Imports without Prefect; every function takes a `Session` (or a `Database`) it is handed.
`backends` reads URLs and hides passwords; `session` opens databases; `migrate` upgrades them;
`models` are the tables; `prompts`, `claims`, `jobs` and `articles` are the use cases.
"""

from articlegen.db.backends import driver_message, safe_url
from articlegen.db.models import (
    Article,
    ArticleReviewStatus,
    Base,
    Job,
    JobStatus,
    Prompt,
    PromptStatus,
)
from articlegen.db.session import Database

__all__ = [
    "Article",
    "ArticleReviewStatus",
    "Base",
    "Database",
    "Job",
    "JobStatus",
    "Prompt",
    "PromptStatus",
    "driver_message",
    "safe_url",
]
