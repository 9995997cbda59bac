"""Ctrl-C, however it arrives: told from a failure, and recorded as the reason a job ended."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from articlegen.core.interrupts import end_reason, interrupted


def _raised(make: Callable[[], None]) -> BaseException:
    with pytest.raises(OSError, match=r"Connection refused|while handling it") as caught:
        make()
    return caught.value


def _refused_after_interrupt() -> None:
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as interrupt:
        raise ConnectionRefusedError(111, "Connection refused") from interrupt


def _error_while_handling_interrupt() -> None:
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        raise OSError("while handling it") from None  # the context stays, the cause is hidden


def test_an_interrupt_is_recognised_behind_the_error_it_caused() -> None:
    """A terminal's Ctrl-C also stops Prefect's server; recording the interrupted run then
    fails to connect, and that error, whose context is the interrupt, is what surfaces."""
    assert interrupted(_raised(_refused_after_interrupt))
    assert interrupted(_raised(_error_while_handling_interrupt))
    assert not interrupted(ConnectionRefusedError(111, "Connection refused"))
    looped = ValueError("a")
    looped.__context__ = ValueError("b")
    looped.__context__.__context__ = looped  # a cycle ends the walk
    assert not interrupted(looped)


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (KeyboardInterrupt(), "interrupted (Ctrl-C)"),
        (
            OSError(111, "Connection refused"),
            "ConnectionRefusedError: [Errno 111] Connection refused",
        ),
        (ValueError(), "ValueError"),
        (ValueError("no model"), "ValueError: no model"),
    ],
)
def test_a_job_records_why_its_run_ended(exc: BaseException, reason: str) -> None:
    """Ctrl-C, bare or behind the error it caused, reads as what it was, never as Python's
    empty `KeyboardInterrupt: `; other errors keep their type and message."""
    assert end_reason(exc) == reason


def test_an_error_caused_by_ctrl_c_is_recorded_with_the_interrupt() -> None:
    """The interrupt is why the run ended; the error it caused is kept beside it, so that a
    real failure while the run stopped is not lost."""
    assert end_reason(_raised(_refused_after_interrupt)) == (
        "interrupted (Ctrl-C), then ConnectionRefusedError: [Errno 111] Connection refused"
    )
    assert end_reason(_raised(_error_while_handling_interrupt)) == (
        "interrupted (Ctrl-C), then OSError: while handling it"
    )


def test_an_interrupt_behind_an_unrelated_cause_is_still_seen() -> None:
    """`raise X from Y` while Ctrl-C was being handled: the cause is Y, the context the
    interrupt; both are followed."""

    def unrelated_cause() -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise OSError("while handling it") from ValueError("unrelated")

    assert interrupted(_raised(unrelated_cause))
