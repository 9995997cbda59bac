"""The tables of review: the audit trail and the workspace's accounts."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from articlegen.core.bounds import MAX_NAME
from articlegen.db.models.base import Base, new_session_key, str_enum, utcnow
from articlegen.db.models.generation import ArticleReviewStatus

__all__ = ["LoginFailure", "ReviewAction", "ReviewEvent", "Reviewer", "ReviewerRole"]


class ReviewAction(enum.StrEnum):
    """What a reviewer did to an article (a row of the audit trail)."""

    APPROVE = "approve"
    REJECT = "reject"
    EDIT = "edit"  # the editor's text saved beside the generated one (and approved)
    REGENERATE = "regenerate"  # a new version queued


class ReviewerRole(enum.StrEnum):
    """What a reviewer account may do: editors act, viewers read."""

    EDITOR = "editor"
    VIEWER = "viewer"


class ReviewEvent(Base):
    """One review action on one article: the audit trail, never edited."""

    __tablename__ = "review_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    article_id: Mapped[int] = mapped_column(
        ForeignKey("articles.id", ondelete="CASCADE"), index=True
    )
    actor: Mapped[str] = mapped_column(String(MAX_NAME))
    action: Mapped[ReviewAction] = mapped_column(str_enum(ReviewAction, "review_action"))
    note: Mapped[str | None] = mapped_column(Text)
    status_before: Mapped[ArticleReviewStatus] = mapped_column(
        str_enum(ArticleReviewStatus, "review_event_before")
    )
    status_after: Mapped[ArticleReviewStatus] = mapped_column(
        str_enum(ArticleReviewStatus, "review_event_after")
    )
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Reviewer(Base):
    """An account of the review workspace. Only a hash of its password is stored."""

    __tablename__ = "reviewers"
    # SQLite would hand a removed account's id to the next one; its old cookies must not
    # name the new account.
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012 (SQLAlchemy's own form)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME), unique=True)
    role: Mapped[ReviewerRole] = mapped_column(str_enum(ReviewerRole, "reviewer_role"))
    password_hash: Mapped[str] = mapped_column(String(200))
    # A random key every session cookie of the account carries; a new one (logging out) ends
    # them all.
    session_key: Mapped[str] = mapped_column(String(64), default=new_session_key)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LoginFailure(Base):
    """Failed logins in a row for a name from one client, whether or not an account has the
    name: each further try waits longer, and a name that exists answers like one that does
    not. Keyed by a digest of the two, so another client cannot lock the account out."""

    __tablename__ = "login_failures"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    last_failed_at: Mapped[datetime] = mapped_column(default=utcnow)
