"""The sandbox templates render in: Jinja's `SandboxedEnvironment`, with a time and a size limit
on each render.

A user template is code its author can get wrong: nested loops that never finish, or text that
grows to gigabytes. Each render gets a budget (`RenderLimits`), and the sandbox's hooks spend it:

- time: every loop step (the compiler wraps each `{% for %}`'s iterable), every call, attribute
  and item lookup, operator and filter checks the deadline;
- size: every `{{ ... }}` output and every `~` concatenation counts its characters, and so does
  the rendered text; `*` (repetition), `**` and the width of a `%`/`format` directive are
  checked before Python builds the result, and padding methods and filters (`center`, `ljust`,
  `indent`, ...) before they pad.

A template past either limit fails with `LimitExceeded`, which names the limit; the article that
used it fails, the others of its batch are written. These are guards against mistakes in the
templates the operator installs (ARTICLEGEN_TEMPLATES_DIR), not against a hostile author: a
single C-level operation Jinja cannot see into still runs to its end.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

__all__ = ["LimitExceeded", "LimitedSandbox", "RenderLimits"]

# Filters and str methods whose integer arguments set how long their result is.
_PADDING_FILTERS = frozenset({"center", "indent", "wordwrap", "slice", "truncate"})
_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
# The width or precision of a printf or format directive: `%99999999d`, `{:>99999999}`.
_PERCENT_WIDTH = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d*)(?:\.(\d+))?")
_FORMAT_WIDTH = re.compile(r"\{[^{}]*?:[^{}\d]*(\d*)(?:\.(\d+))?[^{}]*\}")
_NESTED_FORMAT = re.compile(r"\{[^{}]*:[^{}]*\{")
_STAR_WIDTH = re.compile(r"%(?:\([^)]*\))?[-#0 +]*\*|%(?:\([^)]*\))?[-#0 +]*\d*\.\*")


@dataclass(frozen=True)
class RenderLimits:
    """How long one render may take, and how many characters it and any value it builds may
    hold (ARTICLEGEN_TEMPLATE_SECONDS, ARTICLEGEN_TEMPLATE_MAX_CHARS)."""

    seconds: float = 5.0
    max_chars: int = 10_000_000


class LimitExceeded(SecurityError):
    """A render ran past its time or size limit; the message names the limit and its setting."""


@dataclass
class _Budget:
    deadline: float
    limits: RenderLimits
    written: int = 0  # characters output so far, `{{ }}` values and `~` results together


class _GuardedCodeGenerator(CodeGenerator):
    """Jinja's compiler, with every loop's iterable and every `~` result passing through the
    environment's checks (`LimitedSandbox.guard_loop`, `LimitedSandbox.guard_text`)."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        """Compile the loop over `environment.guard_loop(iterable)`."""
        guard = nodes.EnvironmentAttribute("guard_loop", lineno=node.lineno)
        node.iter = nodes.Call(guard, [node.iter], [], None, None, lineno=node.lineno)
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        """Compile `a ~ b` as `environment.guard_text(a ~ b)`."""
        self.write("environment.guard_text(")
        super().visit_Concat(node, frame)
        self.write(")")


class LimitedSandbox(SandboxedEnvironment):
    """A `SandboxedEnvironment` whose renders run within a `RenderLimits` budget, entered with
    `budget`. Thread-safe: each thread renders against its own budget."""

    code_generator_class = _GuardedCodeGenerator
    intercepted_binops = frozenset({"*", "+", "**", "%"})

    def __init__(self, limits: RenderLimits, **options: Any) -> None:
        super().__init__(**options)
        self.limits = limits
        self._local = threading.local()
        self.filters = {name: self._guarded_filter(name, f) for name, f in self.filters.items()}

    @contextmanager
    def budget(self) -> Iterator[None]:
        """Render within this environment's limits, from now until the block ends."""
        self._local.budget = _Budget(time.monotonic() + self.limits.seconds, self.limits)
        try:
            yield
        finally:
            self._local.budget = None

    def spend(self, chars: int) -> None:
        """Count `chars` characters of output against the budget, and check the clock."""
        budget = self._current()
        if budget is None:
            return
        budget.written += chars
        if budget.written > budget.limits.max_chars:
            raise self.too_long(budget.written, "the output")
        self.check_time()

    def check_time(self) -> None:
        """Fail the render if it has run past its time limit."""
        budget = self._current()
        if budget is not None and time.monotonic() > budget.deadline:
            raise LimitExceeded(
                f"rendering took longer than its limit of {budget.limits.seconds:g} s "
                "(ARTICLEGEN_TEMPLATE_SECONDS): a loop that does not end, or one over far too "
                "much"
            )

    def guard_loop(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """`iterable`, checking the clock before each step."""
        for item in iterable:
            self.check_time()
            yield item

    def guard_text(self, value: Any) -> Any:
        """`value`, if its size is within the limit."""
        self._check_size(value)
        return value

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """`left operator right`, refused before Python builds a result past the limits."""
        self.check_time()
        limit = self.limits.max_chars
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(times, int)
                if sized and len(seq) * times > limit:
                    raise self.too_long(len(seq) * times)
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            # An integer power's size, in bits, is about the exponent times the base's bits.
            if abs(left) > 1 and right * abs(left).bit_length() > 8 * limit:
                raise LimitExceeded(
                    f"{left} ** {right} is a number too large to compute "
                    "(ARTICLEGEN_TEMPLATE_MAX_CHARS)"
                )
        elif operator == "%" and isinstance(left, str):
            self._check_widths(_PERCENT_WIDTH, left)
            if _STAR_WIDTH.search(left):  # `%*d`: the width is an argument
                self._check_widths_of("%", right if isinstance(right, tuple) else (right,), {})
        return self._check_size(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Call `__obj` from a template: padding methods checked before, the result after."""
        __self.check_time()
        if isinstance(getattr(__obj, "__self__", None), str):
            name = getattr(__obj, "__name__", "")
            if name in _PADDING_METHODS:
                __self._check_widths_of(name, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        return __self._check_size(result)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`str.format` as the sandbox runs it, refused if a width in it is over the limit."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        spec: str = value.__self__
        self._check_widths(_FORMAT_WIDTH, spec)
        if not _NESTED_FORMAT.search(spec):
            return wrapped

        def checked(*args: Any, **kwargs: Any) -> str:
            # A width given as an argument (`{:>{w}}`): no integer argument may be over it.
            self._check_widths_of("format", args, kwargs)
            return wrapped(*args, **kwargs)

        return checked

    def getattr(self, obj: Any, attribute: str) -> Any:
        """`obj.attribute`, checking the clock."""
        self.check_time()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        """`obj[argument]`, checking the clock."""
        self.check_time()
        return super().getitem(obj, argument)

    def _guarded_filter(self, name: str, f: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(f)  # keeps `jinja_pass_arg`, so Jinja passes the same first argument
        def guarded(*args: Any, **kwargs: Any) -> Any:
            self.check_time()
            if name in _PADDING_FILTERS:
                self._check_widths_of(name, args, kwargs)
            elif name == "format" and args and isinstance(args[0], str):
                self._check_widths(_PERCENT_WIDTH, args[0])
            return self._check_size(f(*args, **kwargs))

        return guarded

    def _check_widths_of(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        for value in (*args, *kwargs.values()):
            number = isinstance(value, int) and not isinstance(value, bool)
            if number and value > self.limits.max_chars:
                raise LimitExceeded(
                    f"`{name}` asked for {value:,} characters, over the limit of "
                    f"{self.limits.max_chars:,} (ARTICLEGEN_TEMPLATE_MAX_CHARS)"
                )

    def _check_widths(self, pattern: re.Pattern[str], spec: str) -> None:
        for match in pattern.finditer(spec):
            for digits in match.groups():
                if digits and (len(digits) > 12 or int(digits) > self.limits.max_chars):
                    raise LimitExceeded(
                        f"a format width of {digits} characters is over the limit of "
                        f"{self.limits.max_chars:,} (ARTICLEGEN_TEMPLATE_MAX_CHARS)"
                    )

    def _check_size(self, value: Any) -> Any:
        if isinstance(value, str | list | tuple | dict) and len(value) > self.limits.max_chars:
            raise self.too_long(len(value))
        return value

    def too_long(self, size: int, what: str = "a value") -> LimitExceeded:
        """The error for `what` (a value, the output) of `size` characters, over the limit."""
        return LimitExceeded(
            f"{what} of {size:,} characters or items is over the limit of "
            f"{self.limits.max_chars:,} (ARTICLEGEN_TEMPLATE_MAX_CHARS)"
        )

    def _current(self) -> _Budget | None:
        budget: _Budget | None = getattr(self._local, "budget", None)
        return budget
