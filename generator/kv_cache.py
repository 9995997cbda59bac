"""A key/value cache written in place into memory allocated once per batch.

transformers offers two caches for plain attention: `DynamicCache` grows by concatenation, so
every decoding step copies the whole cache (at large batches that costs more than the model's
own arithmetic), and `StaticCache` is preallocated but hands attention its full length at every
step, so each step reads every position of the cache, the ones not written yet included. This
one is preallocated like the second and hands attention only the positions written so far, like
the first: each step reads what it needs and copies nothing.

`rows(which, offset)` gives a cache over some rows of the same memory, from a position on: the
engine runs the prompts of a batch in chunks of similar length, and each chunk's keys and
values land straight where the whole batch's decoding will read them, with no second copy.

`ragged(cursors, longest)` lets every row write its next position at its own column: under
continuous batching (`generator.continuous`) a row joins when another leaves, so rows are at
different lengths, each laid out from column 0 of its own row; `resize` drops rows that left and
widens the rows when longer prompts come.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicLayer
from transformers.cache_utils import Cache

__all__ = ["InPlaceCache"]


class _Storage:
    """One layer's keys and values for the whole batch, allocated at the first write, when the
    model's own key/value shape (heads, head width), precision and device are known."""

    def __init__(self, batch: int, capacity: int) -> None:
        self.batch = batch
        self.capacity = capacity
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    def tensors(
        self, key_states: torch.Tensor, value_states: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys is None or self.values is None:
            self.keys = key_states.new_zeros(
                (self.batch, key_states.shape[1], self.capacity, key_states.shape[3])
            )
            self.values = value_states.new_zeros(
                (self.batch, value_states.shape[1], self.capacity, value_states.shape[3])
            )
        return self.keys, self.values


class _InPlaceLayer(DynamicLayer):  # type: ignore[no-untyped-call]
    """Rows `rows` of one layer's storage from position `offset` on; attention sees the
    positions written so far."""

    def __init__(self, storage: _Storage, rows: slice | torch.Tensor, offset: int) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.storage = storage
        self.rows = rows
        self.offset = offset
        self.length = 0
        self.is_initialized = True
        self.cursors: torch.Tensor | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.storage.tensors(key_states, value_states)
        if self.cursors is not None:
            # One new position per row, each at its own column; attention reads every row up to
            # the longest (the mask hides what a shorter row has not written).
            if self.length >= self.storage.capacity:
                raise ValueError(f"cache of {self.storage.capacity} positions is full")
            rows = torch.arange(keys.shape[0], device=keys.device)
            keys[rows, :, self.cursors] = key_states[:, :, 0]
            values[rows, :, self.cursors] = value_states[:, :, 0]
            self.keys = keys[:, :, : self.length + 1]
            self.values = values[:, :, : self.length + 1]
            return self.keys, self.values
        start = self.offset + self.length
        end = start + key_states.shape[-2]
        if end > self.storage.capacity:
            raise ValueError(f"cache of {self.storage.capacity} positions is full")
        keys[self.rows, :, start:end] = key_states
        values[self.rows, :, start:end] = value_states
        first = self.length == 0
        self.length += key_states.shape[-2]
        if first and not isinstance(self.rows, slice):
            # Rows picked by index (a queue's refill) cannot be viewed in place: reading them
            # back would copy every layer's keys and values, all held until the pass ends
            # (hundreds of MiB for a large chunk). What attention reads is what was just
            # written, so it gets that, and nothing is kept.
            self.keys = self.values = None
            return key_states, value_states
        # Views, not copies: attention reads these positions in place.
        self.keys = keys[self.rows, :, self.offset : end]
        self.values = values[self.rows, :, self.offset : end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def get_max_length(self) -> int:
        return self.storage.capacity - self.offset


class InPlaceCache(Cache):
    """A cache of `batch` rows and `capacity` positions for a model of `layers` layers."""

    def __init__(self, storages: list[_Storage], rows: slice | torch.Tensor, offset: int) -> None:
        self._layers = [_InPlaceLayer(s, rows, offset) for s in storages]
        super().__init__(layers=list(self._layers))
        self._storages = storages

    @classmethod
    def allocate(cls, layers: int, batch: int, capacity: int) -> InPlaceCache:
        """An empty cache; memory is taken at the first write of each layer."""
        return cls([_Storage(batch, capacity) for _ in range(layers)], slice(None), 0)

    def rows(self, which: slice | torch.Tensor, offset: int) -> InPlaceCache:
        """A cache writing rows `which` (a slice, or row indices) of this one's memory, from
        position `offset` on."""
        return InPlaceCache(self._storages, which, offset)

    def ragged(self, cursors: torch.Tensor, longest: int) -> None:
        """The next step writes row r at column `cursors[r]` and attends to columns up to
        `longest` (the largest cursor); the attention mask must hide, per row, what it has not
        written."""
        for layer in self._layers:
            layer.cursors = cursors
            # What `get_seq_length` says, hence where transformers puts the causal mask's query.
            layer.length = longest

    def resize(self, rows: torch.Tensor, batch: int, capacity: int) -> None:
        """Keep rows `rows`, in that order, as the first of `batch` rows of `capacity`
        positions: rows that left a batch stop costing work, a queue whose next prompts are
        longer gets wider rows, and one whose next prompts are shorter, narrower and more of
        them. Narrower rows keep their first `capacity` positions: the caller keeps only rows
        that never write past them. The rows added hold zeros."""
        if len(rows) > batch:
            raise ValueError(f"cannot keep {len(rows)} rows in {batch}")
        for layer, storage in zip(self._layers, self._storages, strict=True):
            # The old memory goes now, not at the next step: a layer's views still hold it.
            layer.keys = layer.values = None
            if storage.keys is not None and storage.values is not None:
                # One tensor at a time, the old one dropped before the new one is made: the
                # peak is the old memory and the kept rows, not three copies.
                kept = storage.keys.index_select(0, rows)
                storage.keys = None
                storage.keys = _grown(kept, batch, capacity)
                del kept
                kept = storage.values.index_select(0, rows)
                storage.values = None
                storage.values = _grown(kept, batch, capacity)
            storage.batch = batch
            storage.capacity = capacity

    def attended(self, layer: int) -> torch.Tensor:
        """The keys attention sees in `layer`: the positions written so far."""
        keys = self._layers[layer].keys
        if keys is None:
            raise ValueError("nothing was written to the cache")
        return keys

    @property
    def nbytes(self) -> int:
        """Memory the cache has taken so far (layers not yet written take none)."""
        return sum(t.nbytes for s in self._storages for t in (s.keys, s.values) if t is not None)

    def written(self, length: int) -> None:
        """Declare positions `0:length` written (by caches from `rows`): decoding goes on from
        there. Positions no chunk wrote hold zeros, which the attention mask must hide."""
        for layer, storage in zip(self._layers, self._storages, strict=True):
            if storage.keys is None or storage.values is None:
                raise ValueError("nothing was written to the cache")
            layer.length = length
            layer.keys = storage.keys[:, :, :length]
            layer.values = storage.values[:, :, :length]


def _grown(kept: torch.Tensor, batch: int, capacity: int) -> torch.Tensor:
    """`kept` as the first rows of `batch` rows of `capacity` positions."""
    if kept.shape[0] == batch and kept.shape[2] == capacity:
        return kept
    grown = kept.new_zeros((batch, kept.shape[1], capacity, kept.shape[3]))
    width = min(capacity, kept.shape[2])
    grown[: kept.shape[0], :, :width] = kept[:, :, :width]
    return grown
