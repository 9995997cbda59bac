"""Reviewer accounts in the database: add, find, list, remove. Hashing passwords and checking
them is `articlegen.review.accounts`' job; only hashes reach this module."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from articlegen.core.errors import InputError, NotFoundError
from articlegen.db.models import Reviewer, ReviewerRole

__all__ = ["add_reviewer", "find_reviewer", "get_reviewer", "list_reviewers", "remove_reviewer"]


def add_reviewer(session: Session, name: str, role: ReviewerRole, password_hash: str) -> Reviewer:
    """A new account; `InputError` if the name is taken."""
    if find_reviewer(session, name) is not None:
        raise InputError(f"there is already a reviewer called {name!r}: choose another name")
    reviewer = Reviewer(name=name, role=role, password_hash=password_hash)
    session.add(reviewer)
    try:
        session.flush()
    except IntegrityError:  # added by another process meanwhile
        raise InputError(
            f"there is already a reviewer called {name!r}: choose another name"
        ) from None
    return reviewer


def find_reviewer(session: Session, name: str) -> Reviewer | None:
    """The account called `name`, if any."""
    return session.scalars(select(Reviewer).where(Reviewer.name == name)).one_or_none()


def get_reviewer(session: Session, reviewer_id: int) -> Reviewer | None:
    """The account with this id, if it still exists."""
    return session.get(Reviewer, reviewer_id)


def list_reviewers(session: Session) -> list[Reviewer]:
    """Every account, by name."""
    return list(session.scalars(select(Reviewer).order_by(Reviewer.name)))


def remove_reviewer(session: Session, name: str) -> None:
    """Delete an account (its past actions stay in the audit trail, under its name)."""
    reviewer = find_reviewer(session, name)
    if reviewer is None:
        raise NotFoundError(f"no reviewer called {name!r}: `articlegen reviewers list` shows them")
    session.delete(reviewer)
