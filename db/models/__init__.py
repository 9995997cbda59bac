"""The tables, as typed `Mapped[...]` models and nothing else: generation (prompts, jobs,
articles), review (the audit trail, accounts), the model registry, and which articlegen
migrated the schema.

Schema changes go through Alembic (`db/migrations/`); a test checks that the migrations and these
models agree.
"""

from articlegen.db.models.base import Base, JSONType, UTCDateTime, new_session_key, utcnow
from articlegen.db.models.generation import (
    Article,
    ArticleReviewStatus,
    Job,
    JobStatus,
    Prompt,
    PromptStatus,
)
from articlegen.db.models.registry import ModelKind, ModelStatus, RegisteredModel
from articlegen.db.models.review import (
    LoginFailure,
    ReviewAction,
    Reviewer,
    ReviewerRole,
    ReviewEvent,
)
from articlegen.db.models.schema import SchemaWriter

__all__ = [
    "Article",
    "ArticleReviewStatus",
    "Base",
    "JSONType",
    "Job",
    "JobStatus",
    "LoginFailure",
    "ModelKind",
    "ModelStatus",
    "Prompt",
    "PromptStatus",
    "RegisteredModel",
    "ReviewAction",
    "ReviewEvent",
    "Reviewer",
    "ReviewerRole",
    "SchemaWriter",
    "UTCDateTime",
    "new_session_key",
    "utcnow",
]
