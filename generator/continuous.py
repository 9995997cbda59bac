"""Continuous batching: a fixed number of rows work through a queue of prompts.

Articles stop at different lengths. In a plain batch a finished row idles until the longest row
ends (with lengths of 16 to 256 tokens that halved the throughput, `bench/continuous.py`). Here a
row that finishes leaves at once and the next waiting prompt takes its place: its prompt runs
through the model alone (with the other newcomers of that step) and its keys and values go
straight into the freed row of the cache. Once no prompt waits, finished rows are compacted out
of the batch and its cache, so the last long articles stop paying for the rows that ended.

The queue comes sorted by prompt length (each call's requests), and the cache is as wide as its
rows' prompts and new tokens need. When the next prompt needs more, the running rows move into
wider rows, fewer of them where a cache budget holds (`cache_tokens`), as soon as the rows still
running fit: the queue never drains to change width. A caller queues its next requests before
the current ones end (`extend`: a flow run's next batch), so they take the rows the current ones
leave and a run has one tail, at its end; their prompts start short again, and once no running
row reaches past narrower rows, the rows narrow, more of them within the budget.

Every row is laid out from column 0 of its own cache row and writes its next position at its own
column (`InPlaceCache.ragged`); its position ids count its own tokens. What a row computes
therefore never depends on which rows run beside it, and with its uniforms and noise drawn from
its own seed (`generator.seeding`) an article is the same token for token alone, in a batch, or
joining one half-way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from articlegen.generator.decode_loop import REASONS, TokenChooser, chunks
from articlegen.generator.inputs import ModelInputs
from articlegen.generator.kv_cache import InPlaceCache
from articlegen.generator.requests import (
    CANCELLED,
    Decoded,
    DecodeStep,
    Prepared,
    StepCallback,
    Stop,
)
from articlegen.generator.row_state import RowState
from articlegen.generator.seeding import draw
from articlegen.generator.widths import Widths, padded

__all__ = ["COMPACT_BELOW", "GROW_FOR", "ContinuousDecoder"]

# Without waiting prompts, finished rows are dropped once the running rows fall to this share
# of the batch: each compaction copies the cache, and this bounds how often that happens
# (at most ~2.4 log2(rows) times per batch) while idle rows never exceed a quarter.
COMPACT_BELOW = 0.75
# Rows are added while the queue runs only for this many times the rows: each copies the cache.
GROW_FOR = 1.25


class ContinuousDecoder:
    """A queue of requests of one scheduling group through at most `rows` rows.

    `run(due)` decodes until the queue's first `due` requests have ended and hands their
    results back; requests queued after them (`extend`) take the rows those leave, and what
    they hold when `run` returns stays here, mid-article, for the next `run`. So a caller
    that feeds its next requests in before the current ones end (a flow run's next claimed
    batch) meets the queue's tail once, at its very end.
    """

    def __init__(
        self,
        inputs: ModelInputs,
        queue: Sequence[Prepared],
        rows: int,
        keep_step_logits: bool = False,
        cache_tokens: int | None = None,
    ) -> None:
        self.inputs = inputs
        self.queue = list(queue)
        self.most_rows = rows
        self.waiting = 0  # index in `queue` of the next prompt to start
        self.results: list[Decoded | None] = [None] * len(queue)
        self.joined = [0] * len(queue)  # the batch's rows when each request started
        self.keep_step_logits = keep_step_logits
        self.stopped = False  # a `stop` cut the last run short: nothing here can go on
        # The token each running row chose last, not yet through the model: where `run` left off.
        self.pending: torch.Tensor | None = None
        configs = [p.request.config for p in queue]
        self.widths = Widths(
            [len(p.ids) for p in queue],
            [c.max_new_tokens for c in configs],
            min(rows, len(queue)),
            cache_tokens,
        )
        capacity, size = self.widths.plan(0, 0, len(queue))
        # Which request each row holds (its index in `queue`), or None once it finished.
        self.holds: list[int | None] = [None] * size
        # The columns each row's article may fill: its prompt pass's padded width and its budget.
        self.reach = [0] * size
        self.kept: list[list[torch.Tensor]] = [[] for _ in range(size)]
        every_step = any(c.noise_every_step and c.noise_sigma > 0 for c in configs)
        steps = max(c.max_new_tokens for c in configs)
        noise = inputs.embedding_dim if every_step else None
        device, vocab = inputs.device, inputs.vocab_size
        self.rows = RowState.allocate(size, capacity, steps, vocab, inputs.pad_id, noise, device)
        # An idle row, as `RowState.allocate` lays it out: a uniform of 1 (a valid draw for
        # every sampler), history past the vocabulary (no token), pads generated.
        self.idle = {"uniforms": 1, "history": vocab, "generated": inputs.pad_id}
        layers = inputs.model.config.get_text_config(decoder=True).num_hidden_layers
        self.cache = InPlaceCache.allocate(layers, size, capacity)
        self.logits = torch.zeros((size, vocab), dtype=torch.float32, device=device)
        self.configs = [configs[0]] * size  # idle rows decode with any settings
        self.chooser = TokenChooser(inputs, self.configs)
        self.ran = self.rows.live  # which rows made a token in the last step
        self.capacity = capacity
        self.longest = 0  # at least every running row's cursor, on the host: no sync per step

    @property
    def carries(self) -> bool:
        """Whether requests are queued or running here, for a next `run` to go on with."""
        return not self.stopped and bool(self.queue)

    def extend(self, more: Sequence[Prepared]) -> None:
        """Queue `more` (of this decoder's scheduling group) after every request queued so
        far: they start as rows free up once those have all started."""
        if not more:
            return
        self.queue += more
        self.results += [None] * len(more)
        self.joined += [0] * len(more)
        configs = [p.request.config for p in more]
        self.widths.extend([len(p.ids) for p in more], [c.max_new_tokens for c in configs])
        self.widths.most_rows = min(self.most_rows, len(self.queue))
        every_step = any(c.noise_every_step and c.noise_sigma > 0 for c in configs)
        noise = self.inputs.embedding_dim if every_step else None
        self.rows.lengthen(max(c.max_new_tokens for c in configs), noise, self.idle)

    def run(
        self, due: int, on_step: StepCallback | None = None, stop: Stop | None = None
    ) -> list[Decoded]:
        """Decode until the first `due` requests queued have ended, and return their results
        in queue order; they leave the queue. Once `stop` says so, those not ended come back
        cancelled, and the decoder is done (`carries` is False)."""
        if self.stopped:
            raise RuntimeError("this decoder was stopped: start a new one")
        left = sum(r is None for r in self.results[:due])
        if on_step is not None and left < due:  # ended in the last call's steps
            on_step(DecodeStep(tokens=0, finished=due - left, running_fraction=0.0))
        if left and self.pending is not None:
            token, self.pending = self.pending, None
            self._advance(token)
        elif left:  # a new queue, or one whose rows have all ended
            self._refill([r for r, h in enumerate(self.holds) if h is None])
        while left:
            token, ended, reasons = self._choose()
            finished = self._finish(ended, reasons, due)
            left -= finished
            if on_step is not None:
                self._report(on_step, finished, due)
            running = any(h is not None for h in self.holds)
            if not left or not (running or self.waiting < len(self.queue)):
                if running:
                    self.pending = token  # the next `run` goes on from here
                break
            if stop is not None and stop():
                self.stopped = True  # what ended is kept; the rest comes back cancelled
                break
            self._advance(token)
        results = [CANCELLED if r is None else r for r in self.results[:due]]
        self._forget(due)
        return results

    def _advance(self, token: torch.Tensor) -> None:
        """Run the chosen tokens through the model, then refill the freed rows from the
        queue, or, once nothing waits, drop them when they are enough to be worth a copy."""
        if any(h is not None for h in self.holds):
            self._forward(token)
        free = [r for r, h in enumerate(self.holds) if h is None]
        waiting = self.waiting < len(self.queue)
        # Freed rows refill at once: waiting for an eighth of them to refill together
        # changed nothing measurable on an H200 (bench/README.md), and idles rows.
        if waiting and free:
            self._refill(free)
        elif not waiting and len(free) >= (1 - COMPACT_BELOW) * len(self.holds):
            self._resize(self.capacity, len(self.holds) - len(free))

    def _forget(self, due: int) -> None:
        """Drop the first `due` requests, ended and handed back, from the queue's books."""
        del self.queue[:due], self.results[:due], self.joined[:due]
        self.widths.forget(due)
        self.waiting -= due
        # Only requests after `due` still hold rows (all before it ended, or were stopped).
        self.holds = [None if h is None or h < due else h - due for h in self.holds]

    def _refill(self, free: list[int]) -> None:
        """Start waiting prompts in the free rows. When the next one needs wider rows, the
        rows widen for the next wave of prompts as soon as the rows still running fit the
        fewer rows the budget then allows; until then the freed rows wait."""
        running = len(self.holds) - len(free)
        unended = running + len(self.queue) - self.waiting
        if not self.widths.fitting(self.waiting, len(free), self.capacity):
            capacity, size = self.widths.plan(self.waiting, self.capacity, unended)
            if running > size:
                return
            self._resize(capacity, size)
            free = [r for r, h in enumerate(self.holds) if h is None]
        else:
            # More rows where they now fit: the queue came back to shorter prompts (the next
            # call's, `extend`: narrower rows, more of them within the budget), or rows were
            # dropped while nothing waited. Once no running row reaches past the new width,
            # and for a quarter more rows at least: every resize copies the cache.
            floor = max(
                (self.reach[r] for r, h in enumerate(self.holds) if h is not None), default=0
            )
            capacity, size = self.widths.plan(self.waiting, floor, unended)
            if size >= GROW_FOR * len(self.holds):
                self._resize(capacity, size)
                free = [r for r, h in enumerate(self.holds) if h is None]
        joining = self.widths.fitting(self.waiting, len(free), self.capacity)
        if joining:
            self._start(free[:joining])

    def _start(self, free: list[int]) -> None:
        """Put waiting prompts into the free rows, in prompt chunks of similar length: each
        chunk's prompts run through the model together, straight into their rows' cache."""
        first = self.waiting
        joining = self.queue[first : first + len(free)]
        self.waiting += len(joining)
        order = sorted(range(len(joining)), key=lambda i: len(joining[i].ids))
        lengths = [len(joining[i].ids) for i in order]
        budgets = [joining[i].request.config.max_new_tokens for i in order]
        for start, stop in padded(chunks(lengths), lengths, budgets, self.capacity):
            members = order[start:stop]
            self._prefill([free[i] for i in members], [first + i for i in members])
        self.chooser.restack(self.configs)

    def _prefill(self, slots: list[int], requests: list[int]) -> None:
        inputs, r = self.inputs, self.rows
        joining = [self.queue[q] for q in requests]
        index = torch.tensor(slots, device=inputs.device)
        ids, mask = inputs.left_pad(joining)
        width = ids.shape[1]
        uniforms, noise = draw(
            joining, width, inputs.embedding_dim, inputs.embedding_rms, inputs.device
        )
        out = inputs.model(
            inputs_embeds=inputs.embed(ids, noise),
            attention_mask=mask,
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
            cache=self.cache.rows(index, offset=0),
            use_cache=True,
            logits_to_keep=1,
        )
        self.logits[index] = out.logits[:, -1, :].float()
        self.longest = max(self.longest, width)
        stops = inputs.stop_mask([p.request.config for p in joining])
        r.start(index, ids, mask, uniforms, noise, stops, inputs.pad_id)
        for slot, q in zip(slots, requests, strict=True):
            self.holds[slot] = q
            self.reach[slot] = width + self.queue[q].request.config.max_new_tokens
            self.joined[q] = len(self.holds)
            self.configs[slot] = self.queue[q].request.config
            self.kept[slot] = []

    def _aligned(self, length: torch.Tensor, fill: int) -> torch.Tensor:
        """Each row's first `length` history tokens, right-aligned, `fill` where the row has no
        token: the last column is every row's latest token, as n-gram blocking and stop
        strings read them."""
        width = int(length.max())
        columns = torch.arange(width, device=length.device)[None, :] - width + length[:, None]
        taken = self.rows.history.gather(1, columns.clamp(min=0))
        return torch.where((columns >= 0) & (taken < self.inputs.vocab_size), taken, fill)

    def _choose(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each live row's next token; which rows it ended, and why (keys of `REASONS`)."""
        r = self.rows
        rows = torch.arange(len(self.holds), device=self.inputs.device)
        steps = r.uniforms.shape[1]
        column = r.made.clamp(max=steps - 1)
        live = r.live
        token, logprob, scores, raw = self.chooser.choose(
            self.logits,
            r.seen,
            r.made,
            r.stops,
            r.uniforms[rows, column],
            # N-gram blocking reads an id past the vocabulary where a row has no token: it
            # matches no real n-gram and is never banned (`decode_loop.decode_batch`).
            lambda: self._aligned(r.cursor, self.inputs.vocab_size),
        )
        if self.keep_step_logits:
            for slot in live.nonzero().flatten().tolist():
                self.kept[slot].append(raw[slot].to("cpu", copy=True))
        token = torch.where(live, token, self.inputs.pad_id)
        r.generated[rows, column] = torch.where(live, token, r.generated[rows, column])
        r.logprobs[rows, column] = torch.where(live, logprob, r.logprobs[rows, column])
        r.history[rows, r.cursor] = torch.where(live, token, r.history[rows, r.cursor])
        r.made += live.long()
        reasons = torch.where(live & r.stops[rows, token], 1, 0)
        ended = reasons > 0
        stopped = self.chooser.stopped(
            lambda: self._aligned(r.cursor + 1, self.inputs.pad_id), scores
        )
        if stopped is not None:
            stopped = live & ~ended & stopped
            reasons = torch.where(stopped, 3, reasons)
            ended = ended | stopped
        full = live & ~ended & (r.made >= self.chooser.settings.max_new_tokens)
        reasons = torch.where(full, 2, reasons)
        ended = ended | full
        r.seen[rows, token] = r.seen[rows, token] | live
        self.ran = live
        r.live = live & ~ended
        return token, ended, reasons

    def _finish(self, ended: torch.Tensor, reasons: torch.Tensor, due: int) -> int:
        """Keep the results of the rows that ended; returns how many of them were due."""
        r = self.rows
        count = 0
        slots = ended.nonzero().flatten().tolist()
        for slot in slots:
            n = int(r.made[slot])
            held = self.holds[slot]
            assert held is not None
            self.results[held] = Decoded(
                ids=r.generated[slot, :n].tolist(),
                logprobs=r.logprobs[slot, :n].tolist(),
                reason=REASONS.get(int(reasons[slot]), "length"),
                step_logits=tuple(self.kept[slot]),
                rows=self.joined[held],
            )
            self.holds[slot] = None
            self.kept[slot] = []
            count += held < due
        if slots:
            # Attention reads up to the longest running row: a long row that ended (the last
            # call's, beside the next call's short prompts) no longer widens every step.
            live = [s for s, h in enumerate(self.holds) if h is not None]
            self.longest = int(r.cursor[live].max()) if live else 0
        return count

    def _report(self, on_step: StepCallback, finished: int, due: int) -> None:
        """Every token made, but only the due requests' progress: the next call's rows count
        towards that call's."""
        r = self.rows
        due_rows = [h is not None and h < due for h in self.holds]
        mine = torch.tensor(due_rows, dtype=torch.bool, device=self.inputs.device)
        budgets = self.chooser.settings.max_new_tokens.float()
        share = torch.where(r.live & mine, r.made.float() / budgets, 0.0).sum()
        tokens, fraction = torch.stack([self.ran.sum().float(), share]).tolist()
        on_step(DecodeStep(tokens=int(tokens), finished=finished, running_fraction=fraction))

    def _forward(self, token: torch.Tensor) -> None:
        """Run the chosen tokens through the model; each live row writes at its own column."""
        inputs, r = self.inputs, self.rows
        rows = torch.arange(len(self.holds), device=inputs.device)
        live = r.live.long()
        embeds = inputs.embeddings(token[:, None])
        if r.step_noise is not None:
            # The noise of the token just made: its index is the count made, less one.
            noise = r.step_noise[rows, (r.made - 1).clamp(min=0)]
            embeds = embeds + noise[:, None, :].to(embeds.dtype)
        r.mask[rows, r.cursor] = torch.where(r.live, 1, r.mask[rows, r.cursor])
        # The longest running row's columns: past a row's own, they are masked, so attention
        # over a few more (a row that ended this step) costs a little and changes nothing.
        longest = min(self.longest, self.capacity - 1)
        width = longest + 1
        self.cache.ragged(r.cursor, longest)
        out = inputs.model(
            inputs_embeds=embeds,
            attention_mask=r.mask[:, :width],
            position_ids=r.position[:, None],
            cache=self.cache,
            use_cache=True,
        )
        self.logits = out.logits[:, -1, :].float()
        r.cursor += live
        r.position += live
        self.longest += 1

    def _resize(self, capacity: int, size: int) -> None:
        """Keep the running rows as the first of `size` rows `capacity` positions wide: rows
        that finished are dropped (no prompt waits for them, or the budget allows fewer, wider
        rows), and the rest are idle until prompts fill them."""
        keep = [slot for slot, held in enumerate(self.holds) if held is not None]
        assert all(self.reach[k] <= capacity for k in keep), "a kept row would be cut"
        index = torch.tensor(keep, dtype=torch.long, device=self.inputs.device)
        added = size - len(keep)
        self.rows.resize(index, size, capacity, self.idle)
        self.cache.resize(index, size, capacity)
        self.capacity = capacity
        self.longest = int(self.rows.cursor.max()) if keep else 0
        logits = self.logits.index_select(0, index)
        self.logits = torch.cat([logits, logits.new_zeros((added, logits.shape[1]))])
        self.holds = [self.holds[k] for k in keep] + [None] * added
        self.reach = [self.reach[k] for k in keep] + [0] * added
        self.configs = [self.configs[k] for k in keep] + [self.queue[0].request.config] * added
        self.kept = [self.kept[k] for k in keep] + [[] for _ in range(added)]
        self.chooser.restack(self.configs)
