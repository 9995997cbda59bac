"""Who is asking, and may they: sessions, CSRF tokens, roles, and the key that signs cookies.

A session is a signed cookie (HttpOnly, SameSite=Lax) holding the reviewer's id, their account's
session epoch and a CSRF token. Every state-changing request is a POST that must carry that
token; every page needs a session, and every POST an editor's.
"""

from __future__ import annotations

import hmac
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Form, HTTPException, Request

from articlegen.core.errors import ConfigError
from articlegen.core.settings import Settings
from articlegen.db.models import ReviewerRole
from articlegen.review.accounts import session_reviewer
from articlegen.runs.context import RunContext

__all__ = [
    "CurrentReviewer",
    "Editor",
    "LoginRequired",
    "Poster",
    "Reader",
    "check_csrf",
    "csrf_token",
    "current_reviewer",
    "secret_key",
    "start_session",
]

SECRET_FILE = "web-secret"
MIN_KEY = 32
# A session lasts this long after the login, however active; then the reviewer logs in again.
SESSION_SECONDS = 12 * 3600


def secret_key(settings: Settings) -> str:
    """ARTICLEGEN_WEB_SECRET, or a random key made once and kept (mode 0600) in
    ARTICLEGEN_CACHE_DIR, so sessions survive a restart."""
    if settings.web_secret is not None:
        return settings.web_secret
    path = settings.cache_dir / SECRET_FILE
    try:
        key = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        key = _make_key(path)
    except OSError as exc:
        raise ConfigError(f"cannot read the workspace's key {path}: {exc.strerror}") from exc
    if len(key) < MIN_KEY:
        raise ConfigError(
            f"the workspace's key in {path} is too short to sign sessions: delete the file (a "
            "new key is made) or set ARTICLEGEN_WEB_SECRET"
        )
    return key


def _make_key(path: Path) -> str:
    """A new key, written whole to a file of its own and then moved into place: a process
    starting at the same moment reads the winner's key, never half of one."""
    key = secrets.token_urlsafe(48)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".web-secret-")
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:  # mkstemp: mode 0600
            handle.write(key)
        os.link(temporary, path)  # fails if another process put its key there first
        os.unlink(temporary)
    except FileExistsError:
        os.unlink(temporary)
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"cannot keep the workspace's key in {path}: {exc.strerror}; set "
            "ARTICLEGEN_WEB_SECRET or a writable ARTICLEGEN_CACHE_DIR"
        ) from exc
    return key


class LoginRequired(Exception):
    """Raised by the dependencies below when a request has no valid session: a page answers
    with a redirect to the login page, anything else with 401. Internal to the web app, so not
    part of the `ArticlegenError` tree."""


@dataclass(frozen=True)
class CurrentReviewer:
    """The reviewer a request comes from."""

    id: int
    name: str
    role: ReviewerRole

    @property
    def can_act(self) -> bool:
        """Editors review; viewers only read."""
        return self.role is ReviewerRole.EDITOR


def start_session(request: Request, reviewer_id: int, key: str) -> None:
    """A fresh session for a reviewer who just logged in (and a fresh CSRF token)."""
    request.session.clear()
    request.session.update(
        {
            "reviewer": reviewer_id,
            "key": key,
            "since": int(time.time()),
            "csrf": secrets.token_urlsafe(32),
        }
    )


def csrf_token(request: Request) -> str:
    """The session's CSRF token, which every form carries; made if the session has none."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def current_reviewer(request: Request) -> CurrentReviewer | None:
    """The reviewer the session names, if it is valid and not older than SESSION_SECONDS."""
    since, reviewer_id = request.session.get("since"), request.session.get("reviewer")
    # `type(...) is int`: a bool is an int to isinstance.
    if type(since) is not int or type(reviewer_id) is not int:
        return None
    if not 0 <= time.time() - since <= SESSION_SECONDS:
        return None
    context: RunContext = request.app.state.context
    with context.database.session(write=False) as session:
        reviewer = session_reviewer(session, reviewer_id, request.session.get("key"))
        if reviewer is None:
            return None
        return CurrentReviewer(reviewer.id, reviewer.name, reviewer.role)


def _reviewer(request: Request) -> CurrentReviewer:
    reviewer = current_reviewer(request)
    if reviewer is None:
        request.session.clear()
        raise LoginRequired
    return reviewer


def check_csrf(request: Request, token: str) -> None:
    """Refuse (403) a POST whose form does not carry the session's CSRF token."""
    expected = request.session.get("csrf")
    if not isinstance(expected, str) or not hmac.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(403, "This form is missing its security token: reload the page.")


def _poster(
    request: Request,
    reviewer: Annotated[CurrentReviewer, Depends(_reviewer)],
    csrf: Annotated[str, Form(alias="csrf_token")] = "",
) -> CurrentReviewer:
    # The token first: a forged request learns nothing, not even the role.
    check_csrf(request, csrf)
    return reviewer


def _editor(reviewer: Annotated[CurrentReviewer, Depends(_poster)]) -> CurrentReviewer:
    if not reviewer.can_act:
        raise HTTPException(403, f"{reviewer.name} is a viewer: only editors may do that.")
    return reviewer


Reader = Annotated[CurrentReviewer, Depends(_reviewer)]  # any reviewer, reading
Poster = Annotated[CurrentReviewer, Depends(_poster)]  # any reviewer, posting a form
Editor = Annotated[CurrentReviewer, Depends(_editor)]  # an editor, posting a form
