"""A job's life around its batches: open it, fix the batch size, keep its leases, stop it on
request, finish it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

from articlegen.core.errors import ConfigError, TemplateError
from articlegen.core.settings import Settings
from articlegen.db.claims import release, renew
from articlegen.db.jobs import add_claimed, create_job, finish_job, get_job
from articlegen.generator.chat import (
    PromptStyle,
    frame_prompt,
    has_chat_template,
    used_format,
)
from articlegen.generator.decoding import DEFAULT_PRESET
from articlegen.generator.presets import Preset
from articlegen.runs.context import context_for
from articlegen.runs.observe import starting
from articlegen.runs.params import GenerateParams
from articlegen.runs.progress import forget_progress
from articlegen.runs.reports import RunResult
from articlegen.runs.upcoming import forget_upcoming

if TYPE_CHECKING:
    from articlegen.generator.loading import LoadedModel

_log = logging.getLogger(__name__)

__all__ = [
    "abandon",
    "abandoned",
    "batch_size_known",
    "cancel_requested",
    "check_model_fits",
    "check_params",
    "choose_batch_size",
    "finish_run",
    "frames_prompts",
    "leases_kept",
    "open_job",
    "run_ended",
    "run_started",
]


def open_job(settings: Settings, params: GenerateParams) -> int:
    """Create the run's job row (queued) and return its id."""
    with context_for(settings).database.session() as session:
        job = create_job(session, params.model_dump(mode="json"), params.model or settings.model)
        return job.id


def check_params(settings: Settings, params: GenerateParams) -> None:
    """What a run can check before it claims anything: its preset and template exist, and its
    own prompt format goes with its system message. A typo is one message at the start, not
    every claimed prompt marked failed."""
    _check_run_style(settings, params)
    context = context_for(settings)
    if params.preset is not None:
        context.presets.get(params.preset)
    template = params.template
    if template is not None:
        names = context.templates.names()
        missing = [
            f"{template}{s}" for s in (".md.j2", ".html.j2") if f"{template}{s}" not in names
        ]
        if missing:
            raise ConfigError(
                f"template {template}: no {' or '.join(missing)} in the templates "
                f"(available: {', '.join(names)})"
            )


def _run_preset(settings: Settings, params: GenerateParams) -> Preset:
    """The preset of every prompt that names none: the run's, else the default."""
    return context_for(settings).presets.get(params.preset or DEFAULT_PRESET)


def frames_prompts(settings: Settings, params: GenerateParams) -> bool:
    """Whether the run sets how prompts are framed: a format or system message of its own or
    of its preset's (`check_model_fits` has something to check)."""
    return bool(params.style.fields() or _run_preset(settings, params).style.fields())


def _system_source(settings: Settings, params: GenerateParams) -> str | None:
    """Where the system message of a prompt that sets none comes from, for a message; None
    when it has none."""
    preset = _run_preset(settings, params)
    if params.style.system is not None:
        return "the run's own (--system, the form's `system`)" if params.style.system else None
    if preset.style.system is not None:
        return f"preset {preset.name}'s, which the prompts naming no preset take"
    if settings.system_message is not None:
        return "ARTICLEGEN_SYSTEM_MESSAGE, which the prompts setting none take"
    return None


def _check_run_style(settings: Settings, params: GenerateParams) -> None:
    source = _system_source(settings, params)
    if params.style.prompt_format != "plain" or source is None:
        return
    raise ConfigError(
        f"the run asks for the plain form (--prompt-format plain, the form's `prompt_format`) "
        f"and gives a system message, {source}: the plain form has no system message; use "
        'chat or auto (for an instruct model), --system "" (the form\'s `no_system`) to run '
        "without one, or drop it"
    )


def check_model_fits(settings: Settings, params: GenerateParams, loaded: LoadedModel) -> None:
    """`ConfigError` when what the run sets for its prompts fails with this model: run-wide
    `stop_token_ids` it has no token for; a format and system message (its preset's too) that
    meet no chat template, a template that refuses a system role or finds its own markup in the
    message, a plain form meeting a system message, framing that leaves no room in the context
    for a one-word prompt and `--max-new-tokens`. Checked once, before the run claims anything,
    rather than failing every prompt alike, each using up an attempt."""
    # Run-wide decoding settings apply over every prompt's own.
    stop_ids = params.overrides.settings().get("stop_token_ids") or ()
    if outside := [i for i in stop_ids if i >= loaded.vocab_size]:
        whose = "the run's stop_token_ids (--set, the form's `more_decoding`)"
        fix = f"use ids below {loaded.vocab_size:,}"
        if params.resume_job is not None:
            whose, fix = _resumed(params.resume_job, "stop_token_ids", "model")
        raise ConfigError(
            f"{whose} {outside} are not tokens of model {loaded.name}, whose vocabulary has "
            f"{loaded.vocab_size:,}: {fix}"
        )
    if not frames_prompts(settings, params):
        return
    style = params.style
    chat = style.prompt_format == "chat" or (bool(style.system) and style.prompt_format != "plain")
    if chat and not has_chat_template(loaded.tokenizer):
        asked = "--prompt-format chat" if style.prompt_format == "chat" else "--system"
        fix = "drop the option"
        if params.resume_job is not None:
            asked, fix = _resumed(params.resume_job, asked, "instruct model")
        raise ConfigError(
            f"the run asks for the chat form ({asked}, the form's fields) but model "
            f"{loaded.name} has no chat template: use an instruct model (`articlegen "
            f"models list`), or {fix}"
        )
    presets = context_for(settings).presets
    try:  # the layers together: the plain form meeting a system message, each layer named
        layers = (PromptStyle(), PromptStyle.from_settings(settings))
        framed = presets.style(params.preset, *layers, run=style)
    except ConfigError as exc:
        raise _unusable(exc) from None
    try:  # with the model: its chat template, what it refuses
        form = used_format(framed, loaded.tokenizer, loaded.name)
        one_word = frame_prompt(loaded.tokenizer, loaded.name, "Topic", framed, form)
    except (ConfigError, TemplateError) as exc:
        raise _unusable(exc, _system_source(settings, params)) from None
    # The fewest tokens any prompt framed so takes (a one-word prompt; the prompt template's
    # wording comes on top), tokenised as the engine will (in plain form with the start token
    # the tokenizer adds), and what it writes: all of `--max-new-tokens`, else one.
    ids = loaded.tokenizer(
        one_word.text, add_special_tokens=one_word.add_special_tokens, verbose=False
    )["input_ids"]
    tokens = len(ids)
    writes = int(params.overrides.settings().get("max_new_tokens") or 1)
    if tokens + writes > loaded.context_length:
        source = _system_source(settings, params) if form == "chat" else None
        framing = f" with the system message, {source}," if source else ""
        how = (
            f"framed by model {loaded.name}'s chat template" if form == "chat" else "in plain form"
        )
        fixes = ["shorten the system message"] if source else []
        fixes += ["lower --max-new-tokens"] if writes > 1 else []
        raise ConfigError(
            f"a one-word prompt{framing} {how} is {tokens:,} tokens, and with {writes:,} new "
            f"(max_new_tokens) that is over the model's context of {loaded.context_length:,}: "
            f"no prompt framed so would fit; {' or '.join(fixes) or 'use the plain form'}"
        )


def _resumed(job_id: int, asked: str, model: str) -> tuple[str, str]:
    """What resumed job `job_id` asks for, and the fix: its options are stored with it, and
    another model than the one it ran on can resume it."""
    return f"job {job_id}'s own {asked}", f"resume it with the {model} it ran on (ARTICLEGEN_MODEL)"


def _unusable(exc: Exception, source: str | None = None) -> ConfigError:
    return ConfigError(
        "what the run sets for its prompts (--prompt-format, --system, --preset; the form's "
        f"`prompt_format`, `system`, `preset`) cannot be used: {exc}"
        + (f"; the system message is {source}" if source else "")
    )


def choose_batch_size(settings: Settings, params: GenerateParams) -> GenerateParams:
    """`params` with a concrete batch size: the one given, else the hardware's (measured once
    per model and machine by `generator.batching`, then read from ARTICLEGEN_CACHE_DIR)."""
    if params.batch_size is not None:
        return params
    from articlegen.generator.batching import auto_batch_size

    loaded = context_for(settings).model(params.model)
    size = auto_batch_size(loaded, settings.cache_dir, settings.kv_cache_mb)
    return params.model_copy(update={"batch_size": size})


def batch_size_known(loaded: LoadedModel, settings: Settings) -> bool:
    """Whether `choose_batch_size` will answer from the cache, not by measuring."""
    from articlegen.generator.batching import cached_batch_size

    return cached_batch_size(loaded, settings.cache_dir, settings.kv_cache_mb) is not None


@contextmanager
def leases_kept(settings: Settings, job_id: int) -> Iterator[None]:
    """Renew the job's lease and its prompts' while the block runs, every third of
    ARTICLEGEN_LEASE_SECONDS, from a background thread: a batch may take longer than a lease.

    A renewal that fails (the database is briefly unreachable) is logged and tried again at the
    next beat; if the lease runs out meanwhile, another run may take the prompts, and this run's
    write-back then skips them (`db.claims.held_by`).
    """
    stop = threading.Event()
    lease = timedelta(seconds=settings.lease_seconds)
    database = context_for(settings).database

    def beat() -> None:
        while not stop.wait(settings.lease_seconds / 3):
            try:
                with database.session() as session:
                    renew(session, job_id, lease)
            except Exception as exc:  # a beat must never kill the run
                _log.warning("job %s: could not renew its lease: %s", job_id, exc)

    thread = threading.Thread(target=beat, name=f"articlegen-lease-job-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def cancel_requested(settings: Settings, job_id: int) -> bool:
    """Whether `articlegen jobs cancel` asked the job to stop."""
    with context_for(settings).database.session(write=False) as session:
        return get_job(session, job_id).cancel_requested


# How often a generating run asks the database whether it was cancelled: a stop lands within
# this and one decoding step, for one small read a second at most.
CANCEL_POLL_SECONDS = 1.0

# Jobs whose run is failing in this process: a batch's write-back failed for good while the
# next batch generates. That batch stops at its next decoding step (`CancelWatch`) rather than
# spend the GPU on articles the failing run would give back unwritten. Only a run going on here
# can be abandoned: a failure heard after its run ended (a future's callbacks run after its
# waiter wakes) must not stop the next run that gets the same job id (another database).
_going: set[int] = set()
_abandoned: set[int] = set()
_abandon_lock = threading.Lock()


def run_started(job_id: int) -> None:
    """The job's run starts generating in this process: `abandon` can stop it from now on."""
    with _abandon_lock:
        _going.add(job_id)
        _abandoned.discard(job_id)


def run_ended(job_id: int) -> None:
    """The job's run is over: nothing can abandon it any more."""
    with _abandon_lock:
        _going.discard(job_id)
        _abandoned.discard(job_id)


def abandon(job_id: int) -> None:
    """Stop what the job's run generates, at its next decoding step; nothing if the run is
    not going on in this process."""
    with _abandon_lock:
        if job_id in _going:
            _abandoned.add(job_id)


def abandoned(job_id: int) -> bool:
    """Whether the job's run, going on in this process, was abandoned."""
    with _abandon_lock:
        return job_id in _abandoned


class CancelWatch:
    """Whether `jobs cancel` asked the job to stop, or its run `abandon`ed it, as the engine's
    `stop`: it is asked after every decoding step, and reads the database at most every
    `every` seconds."""

    def __init__(self, settings: Settings, job_id: int, every: float = CANCEL_POLL_SECONDS):
        self.settings = settings
        self.job_id = job_id
        self.every = every
        self._checked = -every  # the first step reads it: a cancel may have come meanwhile
        self._requested = False

    def __call__(self) -> bool:
        if abandoned(self.job_id):
            return True
        now = time.monotonic()
        if not self._requested and now - self._checked >= self.every:
            self._checked = now
            try:
                self._requested = cancel_requested(self.settings, self.job_id)
            except Exception as exc:  # a lost read must not fail the batch: ask again later
                _log.warning(
                    "job %s: could not read whether it was cancelled: %s", self.job_id, exc
                )
        return self._requested


def finish_run(
    settings: Settings,
    job_id: int,
    params: GenerateParams,
    error: str | None = None,
    cancelled: bool = False,
    ahead: Sequence[int] = (),
) -> RunResult:
    """Close the job and return its final counts. Whatever the job still holds was not
    written (a failed or stopped run, or a batch it stopped in): it goes back to pending, so
    the next run takes it. A stopped run's claim does not count as an attempt; a failed run's
    does, with its error in each prompt's history (and a prompt claimed
    ARTICLEGEN_MAX_ATTEMPTS times fails), except for `ahead`: the batch claimed for the next
    generation, which never ran as a batch of its own (what it started in the last batch's
    rows is dropped unwritten). Its articles come off the job's total too, counted as the run's
    `params` counted them at the claim: the total is what the run took on."""
    forget_progress(job_id)  # whoever displays it holds its own reference
    forget_upcoming(job_id)
    context = context_for(settings)
    context.drop_carried()  # the rows the next batch started: it will not come
    run_ended(job_id)
    with context.database.session() as session:
        if ahead:
            unstarted = release(session, job_id, ahead, uncount=True)
            add_claimed(session, job_id, -sum(len(params.variants_of(p)) for p in unstarted))
        if cancelled:
            release(session, job_id, uncount=True)
        else:
            release(session, job_id, max_attempts=settings.max_attempts, error=error)
        job = finish_job(session, job_id, error, cancelled)
        starting(job_id, 0, "close")
        return RunResult(
            job=job.id,
            status=job.status.value,
            total=job.total,
            done=job.done,
            failed=job.failed,
            model=job.model,
            model_revision=job.model_revision,
        )
