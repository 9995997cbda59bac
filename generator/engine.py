"""Batched generation: many prompts, one model, each article reproducible from its own seed.

`Engine.generate` takes requests (prompt text, decoding config, seed) and returns one outcome per
request, in order: a `Generation`, or a `GenerationFailure` for a prompt that cannot run (too
long for the context). How requests become batches is `generator.scheduling`'s; greedy and
sampled requests run in our own loop, as a queue through the batch's rows where the model's
attention allows it (`generator.continuous`), else batch by batch (`generator.decode_loop`);
beam batches run through transformers (`generator.beam`).

An article ends at any of its stop tokens: the tokenizer's end-of-text, the ids of the model's
`generation_config` (instruct models end a turn with their own), and the request's
`stop_token_ids`. The model's other generation defaults (temperature, top-p, …) are not used:
the preset says how to decode, the same on every model.

Embedding noise: with `noise_sigma` > 0, Gaussian noise of standard deviation
`noise_sigma * rms(E)` is added to the prompt's embeddings, and with `noise_every_step` to each
generated token's embedding too (`generator.seeding`). E is the embeddings as the model's
embedding module hands them on (Gemma's scales its weights by sqrt(hidden)), so one sigma is
the same share of the signal on every model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import torch

from articlegen.generator.beam import beam_search
from articlegen.generator.continuous import ContinuousDecoder
from articlegen.generator.decode_loop import decode_batch, rows_independent
from articlegen.generator.inputs import ModelInputs
from articlegen.generator.loading import LoadedModel
from articlegen.generator.requests import (
    DecodeStep,
    Generation,
    GenerationFailure,
    GenerationRequest,
    Outcome,
    Prepared,
    StepCallback,
    Stop,
)
from articlegen.generator.scheduling import Batch, batch_key, run_splitting, schedule

__all__ = ["Engine"]


class Engine:
    """Generates articles with one loaded model. Not thread-safe: one engine per worker."""

    def __init__(
        self,
        loaded: LoadedModel,
        batch_size: int = 8,
        keep_step_logits: bool = False,
        cache_tokens: int | None = None,
        continuous: bool | None = None,
    ) -> None:
        """`batch_size` caps a batch's rows; `cache_tokens`, if set, caps its key/value cache:
        rows x row width (a plain batch's longest prompt plus its most new tokens; a queue's
        widest prompt with its own new tokens), which bounds the batch's memory whatever
        the prompts' lengths (short prompts then run in larger batches than long ones).
        `continuous` refills finished rows (by default wherever the model allows it; False
        runs batch by batch, the benchmark's baseline)."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if cache_tokens is not None and cache_tokens < 1:
            raise ValueError("cache_tokens must be at least 1")
        self.loaded = loaded
        self.batch_size = batch_size
        self.cache_tokens = cache_tokens
        # Tests inspect the raw distribution of every step; off by default (it is B x T x V).
        self.keep_step_logits = keep_step_logits
        self.inputs = ModelInputs(loaded)
        # Rows refill as articles finish: only where our cache can write row by row.
        self.continuous = rows_independent(loaded.model) and continuous is not False
        self._carried: _Carried | None = None  # the last call's queue, going on (`ahead`)

    def encode(self, prompt: str, add_special_tokens: bool = True) -> list[int]:
        """The prompt's token ids, as the engine feeds them to the model."""
        return self.inputs.encode(prompt, add_special_tokens)

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        on_step: StepCallback | None = None,
        stop: Stop | None = None,
        ahead: Sequence[GenerationRequest] = (),
    ) -> list[Outcome]:
        """Generate every request; outcomes come back in request order. `on_step` hears how
        far each batch is after every decoding step (after the whole batch, for beams). Once
        `stop` says so (it is asked after every step, and before every batch), the requests
        not ended come back as stopped failures.

        `ahead` are the requests of the caller's next call. Those of the group of this call's
        last queue join it: rows that free up once every request of this call has started
        take them, and what they hold when this call ends goes on decoding in the next call,
        if that call's requests are exactly these; any other call starts afresh. Each article
        is the same either way: a row never depends on its neighbours."""
        outcomes: list[Outcome | None] = [None] * len(requests)
        runnable = self._prepare(requests, outcomes)
        plan = schedule(runnable, self.batch_size, self.cache_tokens, self.continuous)
        carried, self._carried = self._carried, None
        resumed = _resumable(carried, plan)
        # Held only by `goes_on` from here, which its run empties: a decoder that does not go
        # on (or runs out of memory) is freed before a fresh one takes its memory.
        goes_on = [carried.decoder] if carried is not None and resumed is not None else []
        del carried
        # The queue that goes on from the last call runs first, then beam batches, then the
        # other queues. Only the last batch keeps its queue for the next call: a queue kept
        # while other batches run would hold its cache beside theirs.
        plan.sort(key=lambda b: (b is not resumed, b.continuous))
        into = plan[-1] if plan and plan[-1].continuous else None
        joining: list[Prepared] = []
        if into is not None and ahead:
            group = batch_key(into.members[0].request.config)
            upcoming = self._prepare(ahead, [None] * len(ahead))
            joining = sorted(
                (p for p in upcoming if batch_key(p.request.config) == group),
                key=lambda p: len(p.ids),
            )
        for batch in plan:
            if stop is not None and stop():
                goes_on.clear()
                for prepared in batch.members:
                    outcomes[prepared.index] = _stopped(prepared)
                continue
            run = self._runner(
                on_step, stop, goes_on if batch is resumed else [], joining if batch is into else []
            )
            for prepared, outcome in run_splitting(batch, run):
                outcomes[prepared.index] = outcome
        assert all(o is not None for o in outcomes)
        return [o for o in outcomes if o is not None]

    def drop_carried(self) -> None:
        """Free what the last call keeps for the next (`ahead`): its run is over."""
        self._carried = None

    def _prepare(
        self, requests: Sequence[GenerationRequest], outcomes: list[Outcome | None]
    ) -> list[Prepared]:
        """Tokenise the requests that can run; a failure for each that cannot, in
        `outcomes`."""
        runnable: list[Prepared] = []
        context = self.loaded.context_length
        for index, request in enumerate(requests):
            ids = self.encode(request.prompt, request.add_special_tokens)
            needed = len(ids) + request.config.max_new_tokens
            outside = [i for i in request.config.stop_token_ids if i >= self.inputs.vocab_size]
            if outside:
                outcomes[index] = GenerationFailure(
                    request.key,
                    f"stop_token_ids {outside} are not tokens of this model (its vocabulary has "
                    f"{self.inputs.vocab_size}): use ids below that",
                )
                continue
            if needed > context:
                outcomes[index] = GenerationFailure(
                    request.key,
                    f"{_what(request)} is {len(ids)} tokens; with max_new_tokens "
                    f"{request.config.max_new_tokens} that is {needed}, over the model's context "
                    f"of {context} tokens: shorten the prompt{_or_system(request)} or lower "
                    "max_new_tokens",
                )
                continue
            runnable.append(Prepared(index, request, ids))
        return runnable

    def _runner(
        self,
        on_step: StepCallback | None,
        stop: Stop | None,
        goes_on: list[ContinuousDecoder],
        joining: list[Prepared],
    ) -> Callable[[Batch], list[tuple[Prepared, Outcome]]]:
        """How `run_splitting` runs a batch: going on with the decoder in `goes_on` (taken
        out of it) and queueing `joining` the first time; a retry after running out of memory
        starts afresh and carries nothing (what ran out was that state)."""
        retry = False

        def run(batch: Batch) -> list[tuple[Prepared, Outcome]]:
            nonlocal retry
            if retry:
                return self._run(batch, on_step, stop)
            retry = True
            decoder = goes_on.pop() if goes_on else None
            return self._run(batch, on_step, stop, decoder, joining)

        return run

    @torch.inference_mode()
    def _run(
        self,
        planned: Batch,
        on_step: StepCallback | None = None,
        stop: Stop | None = None,
        goes_on: ContinuousDecoder | None = None,
        joining: Sequence[Prepared] = (),
    ) -> list[tuple[Prepared, Outcome]]:
        started = time.perf_counter()
        batch = planned.members
        if batch[0].request.config.num_beams > 1:
            rows = beam_search(self.inputs, batch)
            if on_step is not None:
                on_step(DecodeStep(sum(len(r.ids) for r in rows), len(rows), 0.0))
        elif planned.continuous:
            if goes_on is not None:  # this call's own requests, in the order they were queued
                by_key = {p.request.key: p for p in batch}
                batch = [by_key[p.request.key] for p in goes_on.queue[: len(batch)]]
                decoder = goes_on
                decoder.extend(joining)
            else:  # sized for the next call's requests too: they join its rows
                decoder = ContinuousDecoder(
                    self.inputs,
                    [*batch, *joining],
                    planned.rows,
                    self.keep_step_logits,
                    planned.cache_tokens,
                )
            rows = decoder.run(len(batch), on_step, stop)
            if decoder.carries:
                self._carried = _Carried(batch_key(batch[0].request.config), decoder)
        else:
            rows = decode_batch(self.inputs, batch, self.keep_step_logits, on_step, stop)
        seconds = time.perf_counter() - started
        total_tokens = sum(len(row.ids) for row in rows) or 1
        results: list[tuple[Prepared, Outcome]] = []
        for prepared, row in zip(batch, rows, strict=True):
            if row.cancelled:
                results.append((prepared, _stopped(prepared)))
                continue
            generation = Generation(
                key=prepared.request.key,
                text=self.inputs.decode(row.ids, row.reason, prepared.request.config),
                token_ids=tuple(row.ids),
                token_logprobs=tuple(row.logprobs),
                prompt_tokens=len(prepared.ids),
                finish_reason=row.reason,
                seconds=seconds * len(row.ids) / total_tokens,
                batch_size=row.rows or min(planned.rows, len(batch)),
                step_logits=row.step_logits,
            )
            results.append((prepared, generation))
        return results


@dataclass(frozen=True)
class _Carried:
    """A queue left mid-way by the last call, for the next: its rows hold requests that
    call was given `ahead`."""

    group: Hashable  # its scheduling group (`batch_key`)
    decoder: ContinuousDecoder


def _resumable(carried: _Carried | None, plan: list[Batch]) -> Batch | None:
    """The batch of `plan` that can go on with `carried`: a queue of its group holding
    exactly its requests (the same keys, prompts, settings and seeds), else None."""
    if carried is None:
        return None
    queued = {p.request.key: p.request for p in carried.decoder.queue}
    if len(queued) != len(carried.decoder.queue):
        return None  # keys repeat: requests cannot be told apart
    for batch in plan:
        if not batch.continuous or batch_key(batch.members[0].request.config) != carried.group:
            continue
        mine = {p.request.key: p.request for p in batch.members}
        if len(mine) == len(batch.members) and mine == queued:
            return batch
    return None


def _stopped(prepared: Prepared) -> GenerationFailure:
    return GenerationFailure(prepared.request.key, "the run was stopped first", stopped=True)


def _what(request: GenerationRequest) -> str:
    # Chat text (the template wrote its special tokens, so none are added) is the template's
    # markup around the prompt, and around a system message if it has one: say so.
    if request.add_special_tokens:
        return "the prompt"
    return "the prompt in chat form (with the template's markup and any system message)"


def _or_system(request: GenerationRequest) -> str:
    return "" if request.add_special_tokens else " or its system message,"
