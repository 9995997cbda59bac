"""A run step as a Prefect task: retried with backoff on transient failures (a lock, a dropped
connection), never on a user's mistake, and never cached: the database is the record."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.exc import IntegrityError

from articlegen.core.errors import ArticlegenError, DatabaseError

__all__ = ["step"]

P = ParamSpec("P")
R = TypeVar("R")


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a failed task unless the failure is the user's to fix (bad input, settings)."""
    try:
        state.result()
    except DatabaseError:
        return True  # a lock or a dropped connection: worth another try
    except (ArticlegenError, IntegrityError):
        # A user's mistake, or a write that collided with another run's: retrying would
        # only repeat it, or write a duplicate version.
        return False
    except Exception:
        return True
    return False


def step(
    name: str, run_name: str | None = None, tags: list[str] | None = None
) -> Callable[[Callable[P, R]], Task[P, R]]:
    """A run step: retried with backoff on transient failures, never cached."""
    return task(
        name=name,
        task_run_name=run_name,
        tags=tags,
        retries=2,
        retry_delay_seconds=[2, 10],
        retry_condition_fn=_transient,
        cache_policy=NO_CACHE,
    )
