"""Batched generation: many prompts, one model, each article reproducible from its own seed.

`Engine.generate` takes requests (prompt text, decoding config, seed) and returns one outcome per
request, in order: a `Generation`, or a `GenerationFailure` for a prompt that cannot run (too
long for the context). Requests are grouped by the settings a batch must share, sorted by
length so padding stays small, and cut into batches of at most `batch_size` rows whose
key/value cache stays within `cache_tokens` positions.

Greedy and sampled rows run in our own decoding loop (`generator.sampling` picks every row's
token at once, from per-article uniforms drawn in advance), so an article's text does not depend
on its batch. Beam search runs through transformers' `generate`.

Embedding noise: with `noise_sigma` > 0, Gaussian noise of standard deviation
`noise_sigma * rms(E)` (E the input embedding matrix) is added to the prompt's word embeddings,
and with `noise_every_step` to each generated token's embedding too. Measuring sigma against the
embedding's RMS makes one value mean the same for models of any width.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from transformers import StaticCache, StopStringCriteria
from transformers.cache_utils import Cache

from generator.decoding import DecodingConfig
from generator.kv_cache import InPlaceCache
from generator.loading import LoadedModel
from generator.sampling import RowSettings, choose_tokens, process_logits

__all__ = [
    "Engine",
    "FinishReason",
    "Generation",
    "GenerationFailure",
    "GenerationRequest",
    "derive_seed",
    "fresh_seed",
]

FinishReason = Literal["eos", "length", "stop_string"]
_SEED_BITS = 63


def derive_seed(base: int, *parts: int | str) -> int:
    """A seed for one article from a base seed and its identity (prompt, variant, version)."""
    text = ":".join(str(p) for p in (base, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> (64 - _SEED_BITS)


def fresh_seed() -> int:
    """A random seed, for articles whose config sets none (it is recorded with the article)."""
    return secrets.randbits(_SEED_BITS)


@dataclass(frozen=True)
class GenerationRequest:
    """One article to generate. `key` is the caller's, handed back with the outcome."""

    key: Hashable
    prompt: str
    config: DecodingConfig
    seed: int


@dataclass(frozen=True)
class Generation:
    """A generated continuation and its measurements."""

    key: Hashable
    text: str
    token_ids: tuple[int, ...]
    token_logprobs: tuple[float, ...]  # log p(token) under the model, before any filtering
    prompt_tokens: int
    finish_reason: FinishReason
    seconds: float  # this article's share of its batch's wall time, by tokens generated
    batch_size: int  # how many articles its batch held (smaller after an out-of-memory split)
    step_logits: tuple[torch.Tensor, ...] = field(default=(), repr=False)

    @property
    def tokens_generated(self) -> int:
        """Tokens produced, the end-of-text token included."""
        return len(self.token_ids)


@dataclass(frozen=True)
class GenerationFailure:
    """A request that could not be generated, and why, in words for the user."""

    key: Hashable
    reason: str


Outcome = Generation | GenerationFailure
# One decoded row: token ids, their log-probabilities, why it ended, raw logits per step.
_Row = tuple[list[int], list[float], FinishReason, tuple[torch.Tensor, ...]]


@dataclass(frozen=True)
class _Prepared:
    index: int
    request: GenerationRequest
    ids: list[int]


class Engine:
    """Generates articles with one loaded model. Not thread-safe: one engine per worker."""

    def __init__(
        self,
        loaded: LoadedModel,
        batch_size: int = 8,
        keep_step_logits: bool = False,
        cache_tokens: int | None = None,
    ) -> None:
        """`batch_size` caps a batch's rows; `cache_tokens`, if set, caps its key/value cache:
        rows x (longest prompt + most new tokens), which bounds the batch's memory whatever
        the prompts' lengths (short prompts then run in larger batches than long ones)."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if cache_tokens is not None and cache_tokens < 1:
            raise ValueError("cache_tokens must be at least 1")
        self.loaded = loaded
        self.batch_size = batch_size
        self.cache_tokens = cache_tokens
        # Tests inspect the raw distribution of every step; off by default (it is B x T x V).
        self.keep_step_logits = keep_step_logits
        tokenizer = loaded.tokenizer
        self.eos_id: int | None = tokenizer.eos_token_id
        # GPT-2 has no pad token. Pad positions are masked out, so any id does; use eos.
        self.pad_id: int = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (self.eos_id or 0)
        )
        embeddings = loaded.model.get_input_embeddings()
        self._embed = embeddings
        self._embedding_rms = float(embeddings.weight.detach().float().pow(2).mean().sqrt())
        # Ids past the tokenizer's vocabulary (padded embedding rows) decode to nothing.
        self.vocab_limit = min(len(tokenizer), loaded.model.config.vocab_size)

    # --- public ---------------------------------------------------------------------------

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Outcome]:
        """Generate every request; outcomes come back in request order."""
        outcomes: list[Outcome | None] = [None] * len(requests)
        groups: dict[Hashable, list[_Prepared]] = defaultdict(list)
        context = self.loaded.context_length
        for index, request in enumerate(requests):
            ids = self._encode(request.prompt)
            needed = len(ids) + request.config.max_new_tokens
            if needed > context:
                outcomes[index] = GenerationFailure(
                    request.key,
                    f"the prompt is {len(ids)} tokens; with max_new_tokens "
                    f"{request.config.max_new_tokens} that is {needed}, over the model's context "
                    f"of {context} tokens: shorten the prompt or lower max_new_tokens",
                )
                continue
            groups[_batch_key(request.config)].append(_Prepared(index, request, ids))
        for members in groups.values():
            # Similar lengths together: less padding, less wasted arithmetic.
            members.sort(key=lambda p: len(p.ids))
            for batch in self._batches(members):
                for prepared, outcome in self._run_splitting(batch):
                    outcomes[prepared.index] = outcome
        assert all(o is not None for o in outcomes)
        return [o for o in outcomes if o is not None]

    # --- batches ----------------------------------------------------------------------------

    def _batches(self, members: list[_Prepared]) -> list[list[_Prepared]]:
        """Cut requests sorted by length into batches of at most `batch_size` rows whose cache
        stays within `cache_tokens`. A single request always makes a batch: one too long for
        the budget still runs, alone."""
        batches: list[list[_Prepared]] = []
        batch: list[_Prepared] = []
        steps = 0
        for prepared in members:
            # Sorted by length: the newest row is the longest, so it sets the batch's width.
            wider = max(steps, prepared.request.config.max_new_tokens)
            # Beam search keeps num_beams rows of cache per request (a group shares it).
            beams = prepared.request.config.num_beams
            cache = (len(batch) + 1) * beams * (len(prepared.ids) + wider)
            if batch and (
                len(batch) == self.batch_size
                or (self.cache_tokens is not None and cache > self.cache_tokens)
            ):
                batches.append(batch)
                batch, wider = [], prepared.request.config.max_new_tokens
            batch.append(prepared)
            steps = wider
        if batch:
            batches.append(batch)
        return batches

    def _encode(self, prompt: str) -> list[int]:
        # The tokenizer adds what its model expects at the start (Llama's <s>; GPT-2 nothing).
        ids: list[int] = self.loaded.tokenizer(prompt)["input_ids"]
        # An empty prompt starts from the start token, or end-of-text as GPT-2 begins documents.
        start = self.loaded.tokenizer.bos_token_id
        return ids or [start if start is not None else (self.eos_id or self.pad_id)]

    def _run_splitting(self, batch: list[_Prepared]) -> list[tuple[_Prepared, Outcome]]:
        try:
            return self._run(batch)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                return [
                    (
                        batch[0],
                        GenerationFailure(
                            batch[0].request.key,
                            "out of GPU memory even alone: lower max_new_tokens or use a "
                            "smaller model",
                        ),
                    )
                ]
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            half = len(batch) // 2
            return self._run_splitting(batch[:half]) + self._run_splitting(batch[half:])

    @torch.inference_mode()
    def _run(self, batch: list[_Prepared]) -> list[tuple[_Prepared, Outcome]]:
        started = time.perf_counter()
        beams = batch[0].request.config.num_beams > 1
        rows = self._beam(batch) if beams else self._loop(batch)
        seconds = time.perf_counter() - started
        total_tokens = sum(len(ids) for ids, _, _, _ in rows) or 1
        results: list[tuple[_Prepared, Outcome]] = []
        for prepared, (ids, logprobs, reason, step_logits) in zip(batch, rows, strict=True):
            text = self._decode(ids, reason, prepared.request.config)
            results.append(
                (
                    prepared,
                    Generation(
                        key=prepared.request.key,
                        text=text,
                        token_ids=tuple(ids),
                        token_logprobs=tuple(logprobs),
                        prompt_tokens=len(prepared.ids),
                        finish_reason=reason,
                        seconds=seconds * len(ids) / total_tokens,
                        batch_size=len(batch),
                        step_logits=step_logits,
                    ),
                )
            )
        return results

    def _decode(self, ids: list[int], reason: FinishReason, config: DecodingConfig) -> str:
        text = str(self.loaded.tokenizer.decode(ids, skip_special_tokens=True))
        if reason == "stop_string":
            cuts = [text.find(s) for s in config.stop_strings if s in text]
            text = text[: min(cuts)] if cuts else text
        return text

    def _left_pad(self, batch: list[_Prepared]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(p.ids) for p in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, prepared in enumerate(batch):
            n = len(prepared.ids)
            ids[row, width - n :] = torch.tensor(prepared.ids)
            mask[row, width - n :] = 1
        device = self.loaded.device
        return ids.to(device), mask.to(device)

    def _noise(
        self, batch: list[_Prepared], width: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-row uniforms [B, T] and noise [B, width + T, D], drawn from each article's seed;
        no noise tensor (None) when no row of the batch asks for noise.

        Drawn on the CPU from a generator per article, in a fixed order, so a row's randomness
        is the same whatever the batch, the device or the other rows' lengths.
        """
        steps = max(p.request.config.max_new_tokens for p in batch)
        dim = self._embed.weight.shape[1]
        uniforms = torch.ones((len(batch), steps))
        noisy = any(p.request.config.noise_sigma > 0 for p in batch)
        # As large as the batch's cache: only batches that use it pay for it.
        noise = torch.zeros((len(batch), width + steps, dim)) if noisy else None
        for row, prepared in enumerate(batch):
            config = prepared.request.config
            generator = torch.Generator().manual_seed(prepared.request.seed)
            # 1 - U[0, 1) lies in (0, 1]: the inverse-CDF draw never lands on an empty token.
            uniforms[row, : config.max_new_tokens] = 1 - torch.rand(
                config.max_new_tokens, generator=generator
            )
            if noise is not None and config.noise_sigma > 0:
                n = len(prepared.ids)
                scale = config.noise_sigma * self._embedding_rms
                noise[row, width - n : width] = scale * torch.randn(n, dim, generator=generator)
                if config.noise_every_step:
                    noise[row, width : width + config.max_new_tokens] = scale * torch.randn(
                        config.max_new_tokens, dim, generator=generator
                    )
        device = self.loaded.device
        return uniforms.to(device), None if noise is None else noise.to(device)

    def _prompt_embeddings(self, ids: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        embeds: torch.Tensor = self._embed(ids)
        if noise is not None:
            # Rows with sigma 0 get exact zeros added: their output equals plain decoding.
            embeds = embeds + noise[:, : ids.shape[1]].to(embeds.dtype)
        return embeds

    def _prefill(
        self, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, length: int
    ) -> tuple[Cache, torch.Tensor]:
        """Run the prompts through the model and return a cache of `length` positions holding
        their keys and values (left-padded, as the batch is), and each row's last logits.

        Rows come sorted by length. A batch of mixed lengths padded to its longest prompt
        would spend most of its prompt arithmetic on padding, so the prompts run in chunks of
        similar length, each padded only to its own longest, and each chunk writes its keys
        and values straight into its rows of the batch's cache (`InPlaceCache.rows`).
        """
        model = self.loaded.model
        batch_size, width = mask.shape
        lengths = mask.sum(dim=1).tolist()
        # Only plain attention layers can be written in place and chunk by chunk (not
        # sliding-window or linear-attention ones): other models use transformers' static
        # cache and prefill in one piece.
        layer_types = getattr(model.config, "layer_types", None) or ["full_attention"]
        if set(layer_types) != {"full_attention"}:
            static = StaticCache(config=model.config, max_cache_len=length)
            out = model(
                inputs_embeds=embeds,
                attention_mask=mask,
                position_ids=positions,
                cache=static,
                use_cache=True,
                logits_to_keep=1,
            )
            return static, out.logits[:, -1, :]
        layers = model.config.get_text_config(decoder=True).num_hidden_layers
        cache = InPlaceCache.allocate(layers, batch_size, length)
        logits: list[torch.Tensor] = []
        for start, stop in _chunks(lengths):
            w = max(lengths[start:stop])  # this chunk's own width: its rows' last w positions
            out = model(
                inputs_embeds=embeds[start:stop, width - w :],
                attention_mask=mask[start:stop, width - w :],
                position_ids=positions[start:stop, width - w :],
                cache=cache.rows(start, stop, offset=width - w),
                use_cache=True,
                logits_to_keep=1,
            )
            logits.append(out.logits[:, -1, :])
        cache.written(width)
        return cache, torch.cat(logits)

    def _loop(self, batch: list[_Prepared]) -> list[_Row]:
        """Greedy and sampled decoding with a KV cache; every step handles all rows at once."""
        model = self.loaded.model
        device = self.loaded.device
        config0 = batch[0].request.config
        ids, mask = self._left_pad(batch)
        batch_size, width = ids.shape
        settings = RowSettings.stack([p.request.config for p in batch], device)
        uniforms, noise = self._noise(batch, width)
        steps = uniforms.shape[1]
        every_step = any(p.request.config.noise_every_step for p in batch)
        step_noise = noise if every_step else None
        no_repeat = _no_repeat_processor(config0)
        stop = (
            StopStringCriteria(self.loaded.tokenizer, list(config0.stop_strings))
            if config0.stop_strings
            else None
        )
        vocab = model.config.vocab_size

        # Which tokens each row has seen, for the repetition penalty (pads excluded).
        seen = torch.zeros((batch_size, vocab + 1), dtype=torch.bool, device=device)
        seen.scatter_(1, torch.where(mask.bool(), ids, vocab), True)
        seen = seen[:, :vocab]

        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache, last_logits = self._prefill(
            self._prompt_embeddings(ids, noise), mask, positions, width + steps
        )
        generated = torch.full((batch_size, steps), self.pad_id, dtype=torch.long, device=device)
        logprobs = torch.zeros((batch_size, steps), device=device)
        lengths = torch.zeros(batch_size, dtype=torch.long, device=device)
        finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
        reasons = torch.zeros(batch_size, dtype=torch.long, device=device)  # 1 eos 2 len 3 stop
        kept: list[torch.Tensor] = []
        for step in range(steps):
            logits = last_logits.float()
            if self.vocab_limit < vocab:
                logits[:, self.vocab_limit :] = float("-inf")
            if self.keep_step_logits:
                kept.append(logits.cpu())
            scores = process_logits(logits, settings, seen, step, self.eos_id)
            if no_repeat is not None:
                history = torch.cat([ids, generated[:, :step]], dim=1)
                scores = no_repeat(history, scores)
            token = choose_tokens(scores, settings, uniforms[:, step])
            token = torch.where(finished, self.pad_id, token)
            generated[:, step] = token
            logprobs[:, step] = logits.log_softmax(-1).gather(1, token[:, None]).squeeze(1)
            lengths += (~finished).long()
            running = ~finished
            if self.eos_id is not None:
                ended = running & (token == self.eos_id)
                reasons = torch.where(ended, 1, reasons)
                finished = finished | ended
            # A stop string completed by the last allowed token is a stop, not a truncation.
            if stop is not None:
                history = torch.cat([ids, generated[:, : step + 1]], dim=1)
                stopped = ~finished & stop(history, scores)
                reasons = torch.where(stopped, 3, reasons)
                finished = finished | stopped
            full = ~finished & (lengths >= settings.max_new_tokens)
            reasons = torch.where(full, 2, reasons)
            finished = finished | full
            if bool(finished.all()):
                break
            seen[torch.arange(batch_size, device=device), token] = True
            mask = torch.cat([mask, mask.new_ones((batch_size, 1))], dim=1)
            # Finished rows idle in place: their positions must not run past the context
            # while longer rows of the batch go on.
            positions = torch.where(finished[:, None], positions[:, -1:], positions[:, -1:] + 1)
            embeds = self._embed(token[:, None])
            if step_noise is not None:
                embeds = embeds + step_noise[:, width + step : width + step + 1].to(embeds.dtype)
            last_logits = model(
                inputs_embeds=embeds,
                attention_mask=mask,
                position_ids=positions,
                cache=cache,
                use_cache=True,
            ).logits[:, -1, :]
        names: dict[int, FinishReason] = {1: "eos", 2: "length", 3: "stop_string"}
        rows: list[_Row] = []
        for row in range(batch_size):
            n = int(lengths[row])
            step_logits = tuple(k[row] for k in kept[:n])
            rows.append(
                (
                    generated[row, :n].tolist(),
                    logprobs[row, :n].tolist(),
                    names.get(int(reasons[row]), "length"),
                    step_logits,
                )
            )
        return rows

    def _beam(self, batch: list[_Prepared]) -> list[_Row]:
        """Beam search through transformers; the batch shares one config (but not the noise)."""
        model = self.loaded.model
        config = batch[0].request.config
        ids, mask = self._left_pad(batch)
        _, noise = self._noise(batch, ids.shape[1])
        embeds = self._prompt_embeddings(ids, noise)
        vocab = model.config.vocab_size
        generation_config = config.to_generation_config(
            self.eos_id,
            self.pad_id,
            suppress_tokens=list(range(self.vocab_limit, vocab)) or None,
        )
        extra: dict[str, Any] = {"tokenizer": self.loaded.tokenizer} if config.stop_strings else {}
        # The ids ride along with the (noised) embeddings so that n-gram blocking and the
        # repetition penalty see the prompt, as in our own loop; the output then starts with
        # the prompt, which is cut off below.
        sequences = model.generate(
            input_ids=ids,
            inputs_embeds=embeds,
            attention_mask=mask,
            generation_config=generation_config,
            **extra,
        )
        outputs: list[tuple[list[int], FinishReason]] = []
        for row in range(len(batch)):
            raw = sequences[row, ids.shape[1] :].tolist()
            # Beams that ended early are padded; for GPT-2 the pad is end-of-text itself, so
            # a row that stopped on a stop string looks as if it ended with end-of-text.
            # Everything from the first pad or end-of-text on is padding, except an
            # end-of-text the model produced, which only a stop string can rule out.
            end = next((i for i, t in enumerate(raw) if t in (self.eos_id, self.pad_id)), len(raw))
            tokens = raw[:end]
            text = self.loaded.tokenizer.decode(tokens, skip_special_tokens=True)
            if any(s in text for s in config.stop_strings):
                outputs.append((tokens, "stop_string"))
            elif end < len(raw) and raw[end] == self.eos_id:
                outputs.append((raw[: end + 1], "eos"))
            else:
                outputs.append((tokens, "length"))
        logprobs = self._score(embeds, mask, [tokens for tokens, _ in outputs])
        return [
            (tokens, row_logprobs, reason, ())
            for (tokens, reason), row_logprobs in zip(outputs, logprobs, strict=True)
        ]

    def _score(
        self, prompt_embeds: torch.Tensor, prompt_mask: torch.Tensor, outputs: list[list[int]]
    ) -> list[list[float]]:
        """log p(token) of each output token under the model, by one teacher-forced pass."""
        width = max((len(o) for o in outputs), default=0)
        if width == 0:
            return [[] for _ in outputs]
        device = self.loaded.device
        tokens = torch.full((len(outputs), width), self.pad_id, dtype=torch.long, device=device)
        out_mask = torch.zeros_like(tokens)
        for row, output in enumerate(outputs):
            tokens[row, : len(output)] = torch.tensor(output, device=device)
            out_mask[row, : len(output)] = 1
        embeds = torch.cat([prompt_embeds, self._embed(tokens)], dim=1)
        mask = torch.cat([prompt_mask, out_mask], dim=1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self.loaded.model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions
        ).logits.float()
        # The logits at position t predict token t + 1: take the slice that predicts outputs.
        start = prompt_embeds.shape[1] - 1
        log_probs = logits[:, start : start + width].log_softmax(-1)
        chosen = log_probs.gather(2, tokens[:, :, None]).squeeze(2)
        return [chosen[row, : len(o)].tolist() for row, o in enumerate(outputs)]


# Prompt chunks: a chunk's padding may add at most this share to its real tokens, and a chunk
# is never cut below this many rows for padding (tiny chunks use the hardware poorly).
_PAD_SHARE = 0.25
_MIN_CHUNK = 8
# A chunk's padded tokens stay within this: the prompt pass's activations (attention scores,
# the MLP's 4x-wide hidden states) grow with a chunk's tokens, and at 4,096 tokens the matrix
# products are already large enough to keep a CPU or a GPU busy.
_CHUNK_TOKENS = 4096


def _chunks(lengths: Sequence[int]) -> list[tuple[int, int]]:
    """Cut rows sorted by length into (start, stop) runs of similar length."""
    if not lengths:
        return []
    chunks: list[tuple[int, int]] = []
    start = 0
    for stop in range(1, len(lengths)):
        rows = stop + 1 - start  # the run's rows if row `stop` joined it
        padded = rows * lengths[stop]
        too_padded = rows > _MIN_CHUNK and padded > (1 + _PAD_SHARE) * sum(
            lengths[start : stop + 1]
        )
        if too_padded or padded > _CHUNK_TOKENS:
            chunks.append((start, stop))
            start = stop
    chunks.append((start, len(lengths)))
    return chunks


def _batch_key(config: DecodingConfig) -> Hashable:
    """What a batch must share. Sampling settings vary per row; beam search shares all."""
    if config.num_beams > 1:
        return ("beam", config.model_copy(update={"seed": None, "noise_sigma": 0.0}))
    return ("loop", config.no_repeat_ngram_size, config.stop_strings)


def _no_repeat_processor(config: DecodingConfig) -> Any:
    if not config.no_repeat_ngram_size:
        return None
    from transformers import NoRepeatNGramLogitsProcessor

    return NoRepeatNGramLogitsProcessor(config.no_repeat_ngram_size)
