"""Reviewer accounts: generated passwords, stored only as Argon2 hashes, and logins that slow
down after repeated failures.

Failed logins are counted per name and client address, whether or not an account has the name;
from the third failure in a row, each further try from that client must wait twice as long as
the one before (1 s, 2 s, 4 s, ... up to 5 minutes), whatever the password. Another client is not
held up, so nobody can lock an editor out. An unknown name costs the same hashing work as a
wrong password and counts the same, so a login says nothing about which names exist.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from articlegen.core.bounds import MAX_NAME
from articlegen.core.errors import InputError
from articlegen.db.models import LoginFailure, Reviewer, ReviewerRole, new_session_key, utcnow
from articlegen.db.reviewers import add_reviewer, find_reviewer, get_reviewer

__all__ = [
    "Login",
    "add_account",
    "end_sessions",
    "session_reviewer",
    "try_login",
    "wait_before_next_try",
]

_hasher = PasswordHasher()
# Verified against when the name is unknown, so that case takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
_NAME = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._@-]{{0,{MAX_NAME - 1}}}$")
FREE_TRIES = 2
MAX_WAIT = timedelta(minutes=5)
_MAX_DOUBLINGS = 9  # 2**9 s is past MAX_WAIT: counting further changes nothing


def add_account(session: Session, name: str, role: ReviewerRole) -> tuple[Reviewer, str]:
    """A new account and its generated password, which is shown once and stored hashed."""
    if not _NAME.match(name):
        raise InputError(
            f"reviewer name {name!r}: use letters, digits, '.', '_', '@' or '-', starting with a "
            f"letter or digit, at most {MAX_NAME} characters"
        )
    password = secrets.token_urlsafe(12)
    return add_reviewer(session, name, role, _hasher.hash(password)), password


def wait_before_next_try(failure: LoginFailure | None, now: datetime) -> float:
    """Seconds a name must wait before its next login may be tried (0: it may)."""
    extra = (failure.failures if failure else 0) - FREE_TRIES
    if failure is None or extra <= 0:
        return 0.0
    wait = min(timedelta(seconds=2 ** min(extra - 1, _MAX_DOUBLINGS)), MAX_WAIT)
    return max(0.0, (failure.last_failed_at + wait - now).total_seconds())


@dataclass(frozen=True)
class Login:
    """How a login went: the account it opens and its session key, or why it was refused
    (for the user)."""

    reviewer_id: int | None = None
    session_key: str = ""
    refused: str | None = None
    retry_after: float = 0.0  # seconds, when refused for too many failures


def try_login(session: Session, name: str, password: str, client: str = "") -> Login:
    """Check a name and password from `client` (its address). A failure is counted in the
    caller's transaction, which must be committed whatever the outcome (hence no exception)."""
    now = utcnow()
    if not _NAME.match(name):  # no account can have it: refused at the same cost
        _verify(_DUMMY_HASH, password)
        return Login(refused="wrong name or password")
    key = hashlib.sha256(f"{name}\n{client}".encode()).hexdigest()
    # Locked (PostgreSQL): parallel tries take turns, so none skips the wait.
    failure = session.scalars(
        select(LoginFailure).where(LoginFailure.key == key).with_for_update()
    ).one_or_none()
    wait = wait_before_next_try(failure, now)
    if wait > 0:
        return Login(
            refused="too many failed logins in a row: wait "
            f"{math.ceil(wait)} s before trying again",
            retry_after=wait,
        )
    reviewer = find_reviewer(session, name)
    if reviewer is None or not _verify(reviewer.password_hash, password):
        if reviewer is None:
            _verify(_DUMMY_HASH, password)
        _count_failure(session, key, now)
        return Login(refused="wrong name or password")
    if failure is not None:
        session.delete(failure)
    if _hasher.check_needs_rehash(reviewer.password_hash):
        reviewer.password_hash = _hasher.hash(password)
    return Login(reviewer.id, reviewer.session_key)


def _count_failure(session: Session, key: str, now: datetime) -> None:
    # One statement, so two first failures at once both count instead of colliding.
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert(LoginFailure)
        .values(key=key, failures=1, last_failed_at=now)
        .on_conflict_do_update(
            index_elements=["key"],
            set_={"failures": LoginFailure.failures + 1, "last_failed_at": now},
        )
    )
    # Names nobody has tried for a while are forgotten: the table stays small.
    session.execute(delete(LoginFailure).where(LoginFailure.last_failed_at < now - 2 * MAX_WAIT))


def session_reviewer(session: Session, reviewer_id: object, key: object) -> Reviewer | None:
    """The account a session cookie names, if it still exists and the session was not ended
    (logging out gives the account a new key, which ends every session of it)."""
    if not isinstance(reviewer_id, int) or not isinstance(key, str):
        return None
    reviewer = get_reviewer(session, reviewer_id)
    if reviewer is None or not hmac.compare_digest(reviewer.session_key, key):
        return None
    return reviewer


def end_sessions(session: Session, reviewer_id: int) -> None:
    """End every session of the account (a new key no cookie carries)."""
    reviewer = get_reviewer(session, reviewer_id)
    if reviewer is not None:
        reviewer.session_key = new_session_key()


def _verify(password_hash: str, password: str) -> bool:
    try:
        return bool(_hasher.verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False
