"""Logging in and out. Failed logins are slowed down twice over: each answer waits half a
second, and an account's repeated failures make it wait longer (`review.accounts`)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from articlegen.review.accounts import end_sessions, try_login
from articlegen.runs.context import RunContext
from articlegen.web.pages import redirect, render
from articlegen.web.security import Poster, check_csrf, start_session

__all__ = ["router", "safe_next"]

router = APIRouter()
FAILED_LOGIN_DELAY_S = 0.5


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this server, never another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/articles"
    return target


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    """The login form."""
    return render(request, "login", None, next=safe_next(next), error=None)


@router.post("/login")
def login(
    request: Request,
    name: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    csrf: Annotated[str, Form(alias="csrf_token")] = "",
    next: Annotated[str, Form()] = "/articles",
) -> Response:
    """Check the name and password; on success, a new session and on to the queue."""
    check_csrf(request, csrf)
    context: RunContext = request.app.state.context
    with context.database.session() as session:  # a failure is counted: commit it
        client = request.client.host if request.client else ""
        outcome = try_login(session, name.strip(), password, client)
    if outcome.reviewer_id is None:
        time.sleep(FAILED_LOGIN_DELAY_S)
        status = 429 if outcome.retry_after else 401
        response = render(
            request, "login", None, status, next=safe_next(next), error=outcome.refused
        )
        if outcome.retry_after:
            response.headers["Retry-After"] = str(int(outcome.retry_after) + 1)
        return response
    start_session(request, outcome.reviewer_id, outcome.session_key)
    return redirect(safe_next(next))


@router.post("/logout")
def logout(request: Request, reviewer: Poster) -> Response:
    """End this account's sessions everywhere."""
    context: RunContext = request.app.state.context
    with context.database.session() as session:
        end_sessions(session, reviewer.id)
    request.session.clear()
    return redirect("/login")
