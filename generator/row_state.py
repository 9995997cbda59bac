"""The per-row state of a continuous batch (`generator.continuous`): one tensor per field, each
indexed by row, that grows, shrinks and widens with the batch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import torch

__all__ = ["RowState"]


@dataclass
class RowState:
    """Per-row state of the running batch, every tensor indexed by row."""

    cursor: torch.Tensor  # [R] long: the column the row writes next
    position: torch.Tensor  # [R] long: its next token's position id
    made: torch.Tensor  # [R] long: tokens generated so far
    live: torch.Tensor  # [R] bool: holds an unfinished article
    mask: torch.Tensor  # [R, capacity] long: which columns hold the row's own tokens
    uniforms: torch.Tensor  # [R, steps]
    generated: torch.Tensor  # [R, steps] long
    logprobs: torch.Tensor  # [R, steps]
    seen: torch.Tensor  # [R, vocab] bool: tokens in the row, for the repetition penalty
    stops: torch.Tensor  # [R, vocab] bool: tokens that end the row
    history: torch.Tensor  # [R, capacity] long: prompt and output, from column 0
    step_noise: torch.Tensor | None  # [R, steps, dim]: noise for each generated token

    @classmethod
    def allocate(
        cls,
        size: int,
        capacity: int,
        steps: int,
        vocab: int,
        pad_id: int,
        noise_dim: int | None,
        device: torch.device,
    ) -> RowState:
        """`size` idle rows `capacity` columns wide, for up to `steps` new tokens each: a
        uniform of 1 (a valid draw for every sampler), pads generated, history past the
        vocabulary (no token); per-step noise of `noise_dim` if set."""

        def zeros(*shape: int, dtype: torch.dtype = torch.long) -> torch.Tensor:
            return torch.zeros(shape, dtype=dtype, device=device)

        return cls(
            cursor=zeros(size),
            position=zeros(size),
            made=zeros(size),
            live=zeros(size, dtype=torch.bool),
            mask=zeros(size, capacity),
            uniforms=torch.ones((size, steps), device=device),
            generated=torch.full((size, steps), pad_id, dtype=torch.long, device=device),
            logprobs=zeros(size, steps, dtype=torch.float32),
            seen=zeros(size, vocab, dtype=torch.bool),
            stops=zeros(size, vocab, dtype=torch.bool),
            history=torch.full((size, capacity), vocab, dtype=torch.long, device=device),
            step_noise=None
            if noise_dim is None
            else zeros(size, steps, noise_dim, dtype=torch.float32),
        )

    @property
    def steps(self) -> int:
        """The most tokens a row can make: the columns of its per-step fields."""
        return self.uniforms.shape[1]

    def start(
        self,
        index: torch.Tensor,
        ids: torch.Tensor,
        mask: torch.Tensor,
        uniforms: torch.Tensor,
        noise: torch.Tensor | None,
        stops: torch.Tensor,
        pad_id: int,
    ) -> None:
        """Rows `index` start the prompts `ids` (left-padded, `mask` 1 on their own tokens),
        with their uniforms, their noise (prompt and steps, or None) and their stop tokens."""
        vocab = self.seen.shape[1]
        width, n = ids.shape[1], uniforms.shape[1]
        self.cursor[index] = width
        self.position[index] = mask.sum(dim=1)
        self.made[index] = 0
        self.live[index] = True
        self.mask[index] = 0
        self.mask[index, :width] = mask
        self.uniforms[index, :n] = uniforms
        self.generated[index] = pad_id
        self.logprobs[index] = 0.0
        # The prompt's tokens, pads excluded (they go to a spare column that is cut off).
        seen = torch.zeros((len(index), vocab + 1), dtype=torch.bool, device=ids.device)
        seen.scatter_(1, torch.where(mask.bool(), ids, vocab), True)
        self.seen[index] = seen[:, :vocab]
        self.stops[index] = stops
        # Padding is no token of the row's: it is kept as an id past the vocabulary.
        self.history[index] = vocab
        self.history[index, :width] = torch.where(mask.bool(), ids, vocab)
        if self.step_noise is not None:
            self.step_noise[index] = 0.0
            if noise is not None:
                self.step_noise[index, :n] = noise[:, width : width + n].float()

    def resize(self, rows: torch.Tensor, size: int, capacity: int, idle: Mapping[str, int]) -> None:
        """Keep rows `rows`, in that order, as the first of `size` rows, `capacity` columns
        wide. What is added holds 0, or `idle[field]` (as an idle row does), until the
        decoder's prefill sets what a row reads."""
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            kept = value.index_select(0, rows)
            setattr(self, f.name, None)
            del value  # the peak is the old tensor and the kept rows, not three copies
            shape = [size, *kept.shape[1:]]
            if f.name in ("mask", "history"):
                shape[1] = capacity
                kept = kept[:, :capacity]  # narrower: no kept row reaches past it
            grown = kept.new_full(shape, idle.get(f.name, 0))
            grown[tuple(slice(0, n) for n in kept.shape)] = kept
            setattr(self, f.name, grown)

    def lengthen(self, steps: int, noise_dim: int | None, idle: Mapping[str, int]) -> None:
        """Make room for `steps` tokens per row (requests with larger budgets joined the
        queue), and for per-step noise of `noise_dim` if set and not there yet. A row's
        columns past its own budget are never read; what is added holds `idle[field]`."""
        if noise_dim is not None and self.step_noise is None:
            rows = self.uniforms.shape[0]
            self.step_noise = self.uniforms.new_zeros((rows, self.steps, noise_dim))
        if steps <= self.steps:
            return
        for name in ("uniforms", "generated", "logprobs", "step_noise"):
            value = getattr(self, name)
            if value is None:
                continue
            shape = [value.shape[0], steps, *value.shape[2:]]
            grown = value.new_full(shape, idle.get(name, 0))
            grown[:, : value.shape[1]] = value
            setattr(self, name, grown)
