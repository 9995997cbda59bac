"""Ctrl-C, however it reaches the code that must tell a stop from a failure."""

from __future__ import annotations

__all__ = ["end_reason", "interrupted"]


def interrupted(exc: BaseException) -> bool:
    """Whether `exc` is Ctrl-C or came of it. A terminal's Ctrl-C reaches the whole process
    group, Prefect's temporary server included: the engine, recording the interrupted run,
    then fails to reach the server, and that error carries the interrupt as its context."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def end_reason(exc: BaseException) -> str:
    """What a job records as the reason its run ended early: Ctrl-C prints as nothing
    (`KeyboardInterrupt: `), and an exception without a message needs no colon."""
    if interrupted(exc):
        return "interrupted (Ctrl-C)"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
