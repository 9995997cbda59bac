"""Greedy and sampled decoding of one batch: prefill the prompts, then one token per step.

Every step handles all rows at once, each with its own settings (`generator.sampling`) and its
own uniforms drawn in advance from its seed (`generator.seeding`), so an article's text does not
depend on its batch. `TokenChooser` is that step, shared with continuous batching
(`generator.continuous`), which most models run; this batch loop serves the models whose cache
must be transformers' own (sliding-window and other non-plain attention layers), where finished
rows stay in the batch, idle, until the last row ends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from transformers import StaticCache, StopStringCriteria
from transformers.cache_utils import Cache

from articlegen.generator.decoding import DecodingConfig
from articlegen.generator.inputs import ModelInputs
from articlegen.generator.kv_cache import InPlaceCache
from articlegen.generator.requests import (
    CANCELLED,
    Decoded,
    DecodeStep,
    FinishReason,
    Prepared,
    StepCallback,
    Stop,
)
from articlegen.generator.sampling import RowSettings, choose_tokens, process_logits
from articlegen.generator.seeding import draw

__all__ = [
    "REASONS",
    "TokenChooser",
    "chunks",
    "decode_batch",
    "plain_attention",
    "rows_independent",
]

# Prompt chunks: a chunk's padding may add at most this share to its real tokens, and a chunk
# is never cut below this many rows for padding (tiny chunks use the hardware poorly).
_PAD_SHARE = 0.25
_MIN_CHUNK = 8
# A chunk's padded tokens stay within this: the prompt pass's activations (attention scores,
# the MLP's 4x-wide hidden states) grow with a chunk's tokens, and at 4,096 tokens the matrix
# products are already large enough to keep a CPU or a GPU busy.
_CHUNK_TOKENS = 4096
REASONS: dict[int, FinishReason] = {1: "eos", 2: "length", 3: "stop_string"}


def plain_attention(model: Any) -> bool:
    """Whether every attention layer of `model` is plain, full attention: only those can be
    written in place, chunk by chunk and row by row (`InPlaceCache`); sliding-window and
    linear-attention layers need transformers' own cache."""
    config = model.config.get_text_config(decoder=True)
    layer_types = getattr(config, "layer_types", None)
    if layer_types:
        return set(layer_types) == {"full_attention"}
    # Older configs (Mistral's) say it with a window shorter than the context.
    window = getattr(config, "sliding_window", None)
    context = getattr(config, "max_position_embeddings", None)
    return window is None or (context is not None and window >= context)


def rows_independent(model: Any) -> bool:
    """Whether each row of a batch may sit at its own length in `InPlaceCache` (continuous
    batching): plain attention, and no layer whose window is placed by cache column (GPT-Neo's
    "local" layers), which would cut a shorter row's window short."""
    config = model.config.get_text_config(decoder=True)
    local = set(getattr(config, "attention_layers", None) or ["global"]) != {"global"}
    return plain_attention(model) and not local


class TokenChooser:
    """One decoding step's choice for every row: the controls (`process_logits`), n-gram
    blocking, the draw, and whether a stop string ended the row. A batch shares its stop
    strings and n-gram size (`generator.scheduling` groups it so)."""

    def __init__(self, inputs: ModelInputs, configs: Sequence[DecodingConfig]) -> None:
        self.inputs = inputs
        config = configs[0]  # the batch's shared settings are any row's
        self.no_repeat = _no_repeat_processor(config)
        self.stop = (
            StopStringCriteria(inputs.loaded.tokenizer, list(config.stop_strings))
            if config.stop_strings
            else None
        )
        self.settings = RowSettings.stack(configs, inputs.device)

    def restack(self, configs: Sequence[DecodingConfig]) -> None:
        """Take the rows' settings (after rows joined or left)."""
        self.settings = RowSettings.stack(configs, self.inputs.device)

    def choose(
        self,
        last_logits: torch.Tensor,
        seen: torch.Tensor,
        made: torch.Tensor,
        stops: torch.Tensor,
        uniforms: torch.Tensor,
        history: Callable[[], torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The next token per row, its log-probability, the scores it was drawn from and the
        raw logits; `history()` gives the rows' tokens so far, right-aligned."""
        logits = last_logits.float()
        if self.inputs.vocab_limit < self.inputs.vocab_size:
            logits = logits.clone()  # the caller's logits stay as the model gave them
            logits[:, self.inputs.vocab_limit :] = float("-inf")
        scores = process_logits(logits, self.settings, seen, made, stops)
        if self.no_repeat is not None:
            scores = self.no_repeat(history(), scores)
        token = choose_tokens(scores, self.settings, uniforms)
        logprob = logits.log_softmax(-1).gather(1, token[:, None]).squeeze(1)
        return token, logprob, scores, logits

    def stopped(
        self, history: Callable[[], torch.Tensor], scores: torch.Tensor
    ) -> torch.Tensor | None:
        """Which rows' text now ends with a stop string (None: the batch has none)."""
        if self.stop is None:
            return None
        return torch.as_tensor(self.stop(history(), scores), device=scores.device)


def chunks(lengths: Sequence[int]) -> list[tuple[int, int]]:
    """Cut rows sorted by length into (start, stop) runs of similar length."""
    if not lengths:
        return []
    cuts: list[tuple[int, int]] = []
    start = 0
    for stop in range(1, len(lengths)):
        rows = stop + 1 - start  # the run's rows if row `stop` joined it
        padded = rows * lengths[stop]
        too_padded = rows > _MIN_CHUNK and padded > (1 + _PAD_SHARE) * sum(
            lengths[start : stop + 1]
        )
        if too_padded or padded > _CHUNK_TOKENS:
            cuts.append((start, stop))
            start = stop
    cuts.append((start, len(lengths)))
    return cuts


def prefill(
    model: Any, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, length: int
) -> tuple[Cache, torch.Tensor]:
    """Run the prompts through the model and return a cache of `length` positions holding
    their keys and values (left-padded, as the batch is), and each row's last logits.

    Rows come sorted by length. A batch of mixed lengths padded to its longest prompt would
    spend most of its prompt arithmetic on padding, so the prompts run in chunks of similar
    length, each padded only to its own longest, and each chunk writes its keys and values
    straight into its rows of the batch's cache (`InPlaceCache.rows`).
    """
    batch_size, width = mask.shape
    lengths = mask.sum(dim=1).tolist()
    # Other models use transformers' static cache and prefill in one piece.
    if not plain_attention(model):
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
    for start, stop in chunks(lengths):
        w = max(lengths[start:stop])  # this chunk's own width: its rows' last w positions
        out = model(
            inputs_embeds=embeds[start:stop, width - w :],
            attention_mask=mask[start:stop, width - w :],
            position_ids=positions[start:stop, width - w :],
            cache=cache.rows(slice(start, stop), offset=width - w),
            use_cache=True,
            logits_to_keep=1,
        )
        logits.append(out.logits[:, -1, :])
    cache.written(width)
    return cache, torch.cat(logits)


def decode_batch(
    inputs: ModelInputs,
    batch: Sequence[Prepared],
    keep_step_logits: bool = False,
    on_step: StepCallback | None = None,
    stop: Stop | None = None,
) -> list[Decoded]:
    """Greedy and sampled decoding of one batch, every row to its end (or until `stop` says
    so: unfinished rows then come back cancelled); `on_step` hears after every step how far
    the batch is."""
    model = inputs.model
    device = inputs.device
    configs = [p.request.config for p in batch]
    ids, mask = inputs.left_pad(batch)
    batch_size, width = ids.shape
    chooser = TokenChooser(inputs, configs)
    settings = chooser.settings
    stops = inputs.stop_mask(configs)
    uniforms, noise = draw(batch, width, inputs.embedding_dim, inputs.embedding_rms, device)
    steps = uniforms.shape[1]
    every_step = any(c.noise_every_step for c in configs)
    step_noise = noise if every_step else None
    vocab = inputs.vocab_size

    # Which tokens each row has seen, for the repetition penalty (pads excluded).
    seen = torch.zeros((batch_size, vocab + 1), dtype=torch.bool, device=device)
    seen.scatter_(1, torch.where(mask.bool(), ids, vocab), True)
    seen = seen[:, :vocab]

    # N-gram blocking must not see the padding: a pad id (GPT-2's is end-of-text) in a row's
    # history would make n-grams that the row alone never had. An id past the vocabulary can
    # neither match a real n-gram nor be banned (transformers drops it into a spare column).
    unpadded = torch.where(mask.bool(), ids, vocab)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache, last_logits = prefill(model, inputs.embed(ids, noise), mask, positions, width + steps)
    generated = torch.full((batch_size, steps), inputs.pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros((batch_size, steps), device=device)
    lengths = torch.zeros(batch_size, dtype=torch.long, device=device)
    finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
    reasons = torch.zeros(batch_size, dtype=torch.long, device=device)  # keys of REASONS
    rows = torch.arange(batch_size, device=device)
    kept: list[torch.Tensor] = []
    cancelled: torch.Tensor | None = None  # rows a stop cut short
    for step in range(steps):
        token, logprob, scores, logits = chooser.choose(
            last_logits,
            seen,
            lengths,
            stops,
            uniforms[:, step],
            partial(_history, unpadded, generated, step),
        )
        if keep_step_logits:
            kept.append(logits.cpu())
        token = torch.where(finished, inputs.pad_id, token)
        generated[:, step] = token
        logprobs[:, step] = logprob
        lengths += (~finished).long()
        running = ~finished
        ended = running & stops[rows, token]
        reasons = torch.where(ended, 1, reasons)
        finished = finished | ended
        # A stop string completed by the last allowed token is a stop, not a truncation.
        stopped = chooser.stopped(partial(_history, ids, generated, step + 1), scores)
        if stopped is not None:
            stopped = ~finished & stopped
            reasons = torch.where(stopped, 3, reasons)
            finished = finished | stopped
        full = ~finished & (lengths >= settings.max_new_tokens)
        reasons = torch.where(full, 2, reasons)
        finished = finished | full
        if on_step is not None:
            _report(on_step, running, finished, lengths, settings.max_new_tokens)
        if bool(finished.all()):
            break
        if stop is not None and stop():
            cancelled = ~finished
            break
        seen[rows, token] = True
        mask = torch.cat([mask, mask.new_ones((batch_size, 1))], dim=1)
        # Finished rows idle in place: their positions must not run past the context while
        # longer rows of the batch go on.
        positions = torch.where(finished[:, None], positions[:, -1:], positions[:, -1:] + 1)
        embeds = inputs.embeddings(token[:, None])
        if step_noise is not None:
            embeds = embeds + step_noise[:, width + step : width + step + 1].to(embeds.dtype)
        last_logits = model(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
        ).logits[:, -1, :]
    results: list[Decoded] = []
    for row in range(batch_size):
        if cancelled is not None and bool(cancelled[row]):
            results.append(CANCELLED)
            continue
        n = int(lengths[row])
        results.append(
            Decoded(
                ids=generated[row, :n].tolist(),
                logprobs=logprobs[row, :n].tolist(),
                reason=REASONS.get(int(reasons[row]), "length"),
                step_logits=tuple(k[row] for k in kept[:n]),
            )
        )
    return results


def _history(prompts: torch.Tensor, generated: torch.Tensor, made: int) -> torch.Tensor:
    return torch.cat([prompts, generated[:, :made]], dim=1)


def _report(
    on_step: StepCallback,
    running: torch.Tensor,
    finished: torch.Tensor,
    lengths: torch.Tensor,
    budgets: torch.Tensor,
) -> None:
    # One device-to-host copy for the three numbers: a GPU syncs once per step for this, as it
    # already does for the all-finished test.
    share = torch.where(finished, 0.0, lengths.float() / budgets.float()).sum()
    made, ended = running.sum(), (finished & running).sum()
    tokens, done, fraction = torch.stack([made.float(), ended.float(), share]).tolist()
    on_step(DecodeStep(tokens=int(tokens), finished=int(done), running_fraction=fraction))


def _no_repeat_processor(config: DecodingConfig) -> Any:
    if not config.no_repeat_ngram_size:
        return None
    from transformers import NoRepeatNGramLogitsProcessor

    return NoRepeatNGramLogitsProcessor(config.no_repeat_ngram_size)
