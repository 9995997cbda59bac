"""The review workspace as an ASGI app: `create_app(settings)`, served by `articlegen web`.

Server-rendered pages and plain forms; a little of our own JavaScript (`static/app.js`) adds
keyboard shortcuts and live job counts, and nothing breaks without it. Nothing is fetched from
elsewhere. Errors are the web's boundary as `Error: ...` is the CLI's: a user's mistake is a page
that says what happened, never a traceback.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import DataError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.staticfiles import StaticFiles

from articlegen.core.describe import describe_error
from articlegen.core.errors import ArticlegenError, ConflictError, DatabaseError, NotFoundError
from articlegen.core.settings import Settings
from articlegen.runs.context import context_for
from articlegen.web import article, jobs, login, queue
from articlegen.web.pages import redirect, render, security_headers
from articlegen.web.security import SESSION_SECONDS, LoginRequired, current_reviewer, secret_key

__all__ = ["SESSION_COOKIE", "create_app"]

SESSION_COOKIE = "articlegen_session"


def create_app(settings: Settings) -> FastAPI:
    """The workspace over the database and templates of `settings`."""
    app = FastAPI(title="articlegen review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.context = context_for(settings)
    app.middleware("http")(security_headers)
    # Signed, HttpOnly, SameSite=Lax; the account's epoch inside lets a logout end it
    # everywhere.
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret_key(settings),
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_SECONDS,
        same_site="lax",
        https_only=settings.web_secure_cookie,
    )
    app.mount("/static", StaticFiles(packages=[("articlegen.web", "static")]), name="static")
    for module in (login, queue, article, jobs):
        app.include_router(module.router)
    _handle_errors(app)
    return app


def _handle_errors(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        # A page asked for by a browser goes to the login form and comes back after it; data
        # (the jobs' live counts) and every POST are refused.
        if request.method == "GET" and not request.url.path.endswith(".json"):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return redirect(f"/login?next={quote(target, safe='')}")
        return render(request, "error", None, 401, status_code=401,
                      message="Log in first: this needs a reviewer's session.")  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI's own HTTPException is a subclass: our 403s, and Starlette's 404 and 405.
        return await _error(request, exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(describe_error(e) for e in exc.errors())
        on_path = any(e.get("loc", ("",))[0] == "path" for e in exc.errors())
        return await _error(request, 404 if on_path else 400, problems)

    @app.exception_handler(ArticlegenError)
    async def _ours(request: Request, exc: ArticlegenError) -> Response:
        status = 400
        if isinstance(exc, NotFoundError):
            status = 404
        elif isinstance(exc, ConflictError):
            status = 409
        elif isinstance(exc, DatabaseError):
            status = 503
        return await _error(request, status, str(exc))

    @app.exception_handler(DataError)
    async def _unstorable(request: Request, exc: DataError) -> Response:
        # PostgreSQL refuses some characters SQLite keeps (a NUL byte, in a form or a URL).
        return await _error(
            request, 400, "the request holds a character the database cannot store (a NUL byte?)"
        )


async def _error(request: Request, status: int, message: str) -> Response:
    # The page keeps the reviewer's navigation when the session is good.
    reviewer = await run_in_threadpool(current_reviewer, request)
    return render(request, "error", reviewer, status, status_code=status, message=message)
