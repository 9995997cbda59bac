"""Ctrl-C, however it reaches the code that must tell a stop from a failure."""

from __future__ import annotations

__all__ = ["INTERRUPTED", "end_reason", "interrupted"]

INTERRUPTED = "interrupted (Ctrl-C)"


def interrupted(exc: BaseException) -> bool:
    """Whether `exc` is Ctrl-C or came of it. A terminal's Ctrl-C reaches the whole process
    group, Prefect's temporary server included: the engine, recording the interrupted run,
    then fails to reach the server, and that error carries the interrupt as its context (or
    cause: both are followed)."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        stack += [e for e in (current.__cause__, current.__context__) if e is not None]
    return False


def end_reason(exc: BaseException) -> str:
    """What a job records as the reason its run ended early. Ctrl-C prints as nothing
    (`KeyboardInterrupt: `); an error that came of it is named after it, so that a real
    failure while the run stopped is not lost; an exception without a message needs no
    colon."""
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return f"{INTERRUPTED}, then {message}" if interrupted(exc) else message
