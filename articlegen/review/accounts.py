"""Reviewer accounts: generated passwords, stored only as Argon2 hashes, and logins that slow
down after repeated failures.

A failed login for an account counts; from the third failure in a row, each further try must
wait twice as long as the one before (1 s, 2 s, 4 s, ... up to 5 minutes), whatever the
password. An unknown name costs the same hashing work as a wrong password, and both get the
same message, so a login says nothing about which names exist.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from articlegen.core.bounds import MAX_NAME
from articlegen.core.errors import InputError
from articlegen.db.models import Reviewer, ReviewerRole, utcnow
from articlegen.db.reviewers import add_reviewer, find_reviewer, get_reviewer

__all__ = ["Login", "add_account", "session_reviewer", "try_login", "wait_before_next_try"]

_hasher = PasswordHasher()
# Verified against when the name is unknown, so that case takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
_NAME = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._@-]{{0,{MAX_NAME - 1}}}$")
FREE_TRIES = 2
MAX_WAIT = timedelta(minutes=5)


def add_account(session: Session, name: str, role: ReviewerRole) -> tuple[Reviewer, str]:
    """A new account and its generated password, which is shown once and stored hashed."""
    if not _NAME.match(name):
        raise InputError(
            f"reviewer name {name!r}: use letters, digits, '.', '_', '@' or '-', starting with a "
            f"letter or digit, at most {MAX_NAME} characters"
        )
    password = secrets.token_urlsafe(12)
    return add_reviewer(session, name, role, _hasher.hash(password)), password


def wait_before_next_try(reviewer: Reviewer, now: datetime) -> float:
    """Seconds the account must wait before its next login may be tried (0: it may)."""
    extra = reviewer.failed_logins - FREE_TRIES
    if extra <= 0 or reviewer.last_failed_at is None:
        return 0.0
    wait = min(timedelta(seconds=2 ** (extra - 1)), MAX_WAIT)
    return max(0.0, (reviewer.last_failed_at + wait - now).total_seconds())


@dataclass(frozen=True)
class Login:
    """How a login went: the account it opens, or why it was refused (for the user)."""

    reviewer_id: int | None = None
    session_epoch: int = 0
    refused: str | None = None
    retry_after: float = 0.0  # seconds, when refused for too many failures


def try_login(session: Session, name: str, password: str) -> Login:
    """Check a name and password. A failure is counted in the caller's transaction, which
    must be committed whatever the outcome (hence no exception here)."""
    now = utcnow()
    reviewer = find_reviewer(session, name)
    if reviewer is None:
        _verify(_DUMMY_HASH, password)
        return Login(refused="wrong name or password")
    wait = wait_before_next_try(reviewer, now)
    if wait > 0:
        return Login(
            refused=f"too many failed logins in a row: wait {wait:.0f} s before trying again",
            retry_after=wait,
        )
    if not _verify(reviewer.password_hash, password):
        reviewer.failed_logins += 1
        reviewer.last_failed_at = now
        return Login(refused="wrong name or password")
    reviewer.failed_logins = 0
    reviewer.last_failed_at = None
    if _hasher.check_needs_rehash(reviewer.password_hash):
        reviewer.password_hash = _hasher.hash(password)
    return Login(reviewer.id, reviewer.session_epoch)


def session_reviewer(session: Session, reviewer_id: object, epoch: object) -> Reviewer | None:
    """The account a session cookie names, if it still exists and the session was not ended
    (logging out raises the account's epoch, which ends every session of it)."""
    if not isinstance(reviewer_id, int) or not isinstance(epoch, int):
        return None
    reviewer = get_reviewer(session, reviewer_id)
    if reviewer is None or reviewer.session_epoch != epoch:
        return None
    return reviewer


def _verify(password_hash: str, password: str) -> bool:
    try:
        return bool(_hasher.verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False
