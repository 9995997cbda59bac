"""How wide a continuous batch's rows are, and how many of them fit the cache budget.

The queue (`generator.continuous`) comes sorted by prompt length, one call's requests after the
other's. A row holds its prompt and its own token budget, so rows are as wide as the widest of
them, not as the longest prompt plus the largest budget: where articles of 16 to 256 tokens
share a queue, a long prompt's short article and a short prompt's long one fit the same rows.
(That took the mixed-length benchmark from 21.3 to 21.9 rows a step, `bench/README.md`.)
Prompts that run through the model together are left-padded to the longest of them; one whose
budget would not fit beside that padding runs in a pass of its own (`padded`). Wider rows mean
fewer of them within a cache budget; a width is chosen for a whole wave of rows (as many
prompts as there are rows), and every change copies the cache.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["Widths", "padded"]


class Widths:
    """Widths and row counts for a queue of prompts of `lengths` tokens that make at most
    `budgets` new tokens each, in at most `most_rows` rows of at most `cache_tokens` positions
    together (no bound when None)."""

    def __init__(
        self,
        lengths: Sequence[int],
        budgets: Sequence[int],
        most_rows: int,
        cache_tokens: int | None,
    ) -> None:
        self.lengths = list(lengths)
        self.budgets = list(budgets)
        self.most_rows = most_rows
        self.cache_tokens = cache_tokens

    def extend(self, lengths: Sequence[int], budgets: Sequence[int]) -> None:
        """Requests queued after the others (a caller's next batch)."""
        self.lengths += lengths
        self.budgets += budgets

    def forget(self, count: int) -> None:
        """The first `count` requests have left the queue: indices count from the next."""
        del self.lengths[:count], self.budgets[:count]

    def width(self, first: int, stop: int) -> int:
        """The width rows need to hold any of requests `first:stop` (0 for none)."""
        if stop <= first:
            return 0
        return max(map(self.reach, range(first, stop)))

    def reach(self, i: int) -> int:
        """The columns request `i` fills: its prompt and its token budget."""
        return self.lengths[i] + self.budgets[i]

    def rows(self, width: int, unended: int) -> int:
        """How many rows `width` wide the batch may have: the rows asked for, within the cache
        budget, no more than the `unended` requests, and at least one."""
        fit = self.most_rows if self.cache_tokens is None else self.cache_tokens // width
        return max(1, min(self.most_rows, fit, unended))

    def plan(self, first: int, floor: int, unended: int) -> tuple[int, int]:
        """The narrowest width, at least `floor`, that holds the next wave of prompts from
        `first` on (as many as there are rows at that width), and that number of rows. Without
        a budget, the width of every prompt left: fewer rows buy nothing, and each change of
        width copies the cache."""
        if self.cache_tokens is None:
            width = max(floor, self.width(first, len(self.lengths)))
            return width, self.rows(width, unended)
        width = max(floor, self.width(first, first + 1))
        while True:
            rows = self.rows(width, unended)
            need = self.width(first, min(first + rows, len(self.lengths)))
            if need <= width:
                return width, rows
            width = need  # wider rows, fewer of them: a smaller wave, which this one holds

    def fitting(self, first: int, free: int, width: int) -> int:
        """How many prompts from `first` on (at most `free`), each with its budget, fit rows
        `width` wide, in queue order."""
        fit = 0
        for i in range(first, min(first + free, len(self.lengths))):
            if self.reach(i) > width:
                break
            fit += 1
        return fit


def padded(
    cuts: Sequence[tuple[int, int]],
    lengths: Sequence[int],
    budgets: Sequence[int],
    width: int,
) -> list[tuple[int, int]]:
    """`cuts`, runs of prompts sorted by length that run through the model together, cut
    further where a prompt left-padded to its run's longest would have no room left for its
    budget in rows `width` wide. Each prompt fits alone (`Widths.fitting` let it in), so a
    run's first prompt always fits."""
    out: list[tuple[int, int]] = []
    for start, stop in cuts:
        most = 0
        for i in range(start, stop):
            most = max(most, budgets[i])
            if i > start and lengths[i] + most > width:
                out.append((start, i))
                start, most = i, budgets[i]
        out.append((start, stop))
    return out
