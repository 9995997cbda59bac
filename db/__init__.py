"""Persistence: the engine and sessions, the tables, migrations, and the use-case queries.

Imports without Prefect; every function takes a `Session` (or a `Database`) it is handed.
"""

from db.models import Article, ArticleReviewStatus, Base, Job, JobStatus, Prompt, PromptStatus
from db.session import Database, safe_url

__all__ = [
    "Article",
    "ArticleReviewStatus",
    "Base",
    "Database",
    "Job",
    "JobStatus",
    "Prompt",
    "PromptStatus",
    "safe_url",
]
