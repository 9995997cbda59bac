"""From prompts to finished articles: generate, post-process, measure, render.

`ArticleWriter.write` is the whole per-batch pipeline. It is two halves, which a caller may run
apart: `generate` (prompts and the engine: the model's work) and `finish` (post-processing,
metrics, rendering: CPU work that touches no model), so the flow finishes one batch while the
model generates the next. A prompt that cannot be written (too long, a broken template, a chat
template that refuses it) comes back as an `ArticleFailure` with the reason; the others are
unaffected.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from articlegen.core.errors import ConfigError, TemplateError
from articlegen.generator.chat import FramedPrompt, PromptStyle, frame_prompt, used_format
from articlegen.generator.decoding import DecodingConfig
from articlegen.generator.engine import Engine
from articlegen.generator.metrics import (
    ArticleMetrics,
    QualityThresholds,
    article_metrics,
    batch_metrics,
)
from articlegen.generator.postprocess import (
    PostprocessConfig,
    ProcessedText,
    postprocess,
    split_paragraphs,
)
from articlegen.generator.requests import (
    Generation,
    GenerationFailure,
    GenerationRequest,
    StepCallback,
    Stop,
)
from articlegen.generator.templates import Templates

__all__ = [
    "DEFAULT_TEMPLATE",
    "ArticleFailure",
    "ArticleInput",
    "ArticleWriter",
    "Generated",
    "WriteResult",
    "WrittenArticle",
    "article_context",
    "article_meta",
    "render_article",
]

DEFAULT_TEMPLATE = "article"
PROMPT_TEMPLATE = "prompt.txt.j2"
# Output format -> template file suffix. A prompt's `template` names the stem.
FORMATS = {"markdown": ".md.j2", "html": ".html.j2"}


@dataclass(frozen=True)
class ArticleInput:
    """One article to write."""

    key: Hashable
    topic: str
    decoding: DecodingConfig
    seed: int
    preset: str
    prompt: str | None = None  # None: built from prompt.txt.j2, the topic and `extra`
    extra: Mapping[str, str] = field(default_factory=dict)
    template: str | None = None  # stem of the article templates; None: "article"
    style: PromptStyle = field(default_factory=PromptStyle)  # format, system message


@dataclass(frozen=True)
class WrittenArticle:
    """A finished article with everything needed to store, review and reproduce it."""

    key: Hashable
    prompt_text: str  # exactly what the model was given: in chat form, the template's text
    prompt_format: Literal["plain", "chat"]  # the form it took
    generation: Generation
    text: ProcessedText
    metrics: ArticleMetrics
    rendered: dict[str, str]
    template_name: str
    template_version: str


@dataclass(frozen=True)
class ArticleFailure:
    """An article that could not be written, and why."""

    key: Hashable
    reason: str
    stopped: bool = False  # not a failure: the run was stopped before it was written


@dataclass(frozen=True)
class Generated:
    """A batch generated and not yet finished: `ArticleWriter.generate`'s result, which
    `ArticleWriter.finish` turns into articles. Plain data: texts, token ids and
    log-probabilities, no tensors unless the engine was asked to keep each step's logits."""

    inputs: list[ArticleInput]
    prompts: dict[Hashable, FramedPrompt]  # what each article's model was given
    failures: dict[Hashable, ArticleFailure]  # articles whose prompt could not be built
    generations: list[Generation | GenerationFailure]
    seconds: dict[str, float]


@dataclass(frozen=True)
class WriteResult:
    """A written batch: one outcome per input (in input order), the batch's own quality
    measures, and where its time went, in seconds per stage."""

    outcomes: list[WrittenArticle | ArticleFailure]
    batch_metrics: dict[str, float | None]
    seconds: dict[str, float]


@dataclass
class ArticleWriter:
    """Writes batches of articles with one engine and one template environment."""

    engine: Engine
    templates: Templates
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    thresholds: QualityThresholds = field(default_factory=QualityThresholds)

    def write(
        self, inputs: Sequence[ArticleInput], on_step: StepCallback | None = None
    ) -> WriteResult:
        """Write every input and measure the batch as a whole; `on_step` hears how far the
        generation is after every decoding step.

        Keys identify articles and must be unique (`ValueError` otherwise).
        """
        return self.finish(self.generate(inputs, on_step))

    def generate(
        self,
        inputs: Sequence[ArticleInput],
        on_step: StepCallback | None = None,
        stop: Stop | None = None,
        ahead: Sequence[ArticleInput] = (),
    ) -> Generated:
        """The first half of `write`: build the prompts and run the engine, nothing more.
        Once `stop` says so, the articles not generated yet come back as stopped failures.
        `ahead` are the inputs of the next call, which may start here (`Engine.generate`)."""
        seconds: defaultdict[str, float] = defaultdict(float)
        started = time.perf_counter()
        by_key = {item.key: item for item in inputs}
        if len(by_key) != len(inputs):
            raise ValueError("ArticleInput keys must be unique within a call")
        failures: dict[Hashable, ArticleFailure] = {}
        prompts: dict[Hashable, FramedPrompt] = {}
        requests = []
        for item in inputs:
            try:
                framed = prompts[item.key] = self.framed_prompt(item)
            except (TemplateError, ConfigError) as exc:
                failures[item.key] = ArticleFailure(item.key, str(exc))
                continue
            requests.append(_request(item, framed))
        upcoming = []
        for item in ahead:
            try:  # one that cannot be framed fails in its own call
                upcoming.append(_request(item, self.framed_prompt(item)))
            except (TemplateError, ConfigError):
                continue
        seconds["prompting"] += time.perf_counter() - started
        started = time.perf_counter()
        generations = self.engine.generate(requests, on_step, stop, upcoming)
        seconds["generation"] += time.perf_counter() - started
        return Generated(list(inputs), prompts, failures, list(generations), dict(seconds))

    def finish(self, generated: Generated) -> WriteResult:
        """The second half of `write`: post-process, measure and render each generation.

        Safe in another thread while `generate` runs the next batch: it reads only this
        writer's immutable settings, the model's name and revision, and the template
        environment, which Jinja shares safely between threads once built (compiled templates
        are immutable, its template cache locks). Calling it twice on one `Generated` gives
        the same articles (a retried write-back may).
        """
        seconds: defaultdict[str, float] = defaultdict(float, generated.seconds)
        by_key = {item.key: item for item in generated.inputs}
        outcomes: dict[Hashable, WrittenArticle | ArticleFailure] = dict(generated.failures)
        for outcome in generated.generations:
            if isinstance(outcome, GenerationFailure):
                outcomes[outcome.key] = ArticleFailure(
                    outcome.key, outcome.reason, stopped=outcome.stopped
                )
                continue
            item = by_key[outcome.key]
            try:
                outcomes[item.key] = self._finish(
                    item, generated.prompts[item.key], outcome, seconds
                )
            except TemplateError as exc:
                outcomes[item.key] = ArticleFailure(item.key, str(exc))
        started = time.perf_counter()
        written = [o.text.body for o in outcomes.values() if isinstance(o, WrittenArticle)]
        measures = batch_metrics(written)
        seconds["post-processing"] += time.perf_counter() - started
        return WriteResult(
            [outcomes[item.key] for item in generated.inputs], measures, dict(seconds)
        )

    def prompt_text(self, item: ArticleInput, form: Literal["plain", "chat"] = "plain") -> str:
        """The prompt's own text: as given, or the prompt template's for `form` (in chat form,
        the user's message)."""
        if item.prompt:
            return item.prompt
        context = {"topic": item.topic, "extra": dict(item.extra), "prompt_format": form}
        return self.templates.render(PROMPT_TEMPLATE, context).text

    def framed_prompt(self, item: ArticleInput) -> FramedPrompt:
        """Exactly what the model is given for `item`, in the form its style and the model's
        tokenizer settle on (`generator.chat`). Raises `ConfigError` or `TemplateError`."""
        loaded = self.engine.loaded
        form = used_format(item.style, loaded.tokenizer, loaded.name)
        user = self.prompt_text(item, form)
        return frame_prompt(loaded.tokenizer, loaded.name, user, item.style, form)

    def _finish(
        self,
        item: ArticleInput,
        framed: FramedPrompt,
        generated: Generation,
        seconds: defaultdict[str, float],
    ) -> WrittenArticle:
        started = time.perf_counter()
        prompt = framed.text
        # A lead, when kept, is the prompt's own words, never a chat template's markup (in chat
        # form the article is a reply, so keeping the request as its lead is rarely wanted).
        text = postprocess(
            generated.text, prompt=framed.user, topic=item.topic, config=self.postprocess
        )
        metrics = article_metrics(
            generated.text,
            text.body,
            generated.token_logprobs,
            generated.finish_reason,
            self.thresholds,
        )
        meta = article_meta(
            model=self.engine.loaded.name,
            revision=self.engine.loaded.revision,
            preset=item.preset,
            seed=item.seed,
            words=metrics.word_count,
            perplexity=metrics.perplexity,
            flags=metrics.flags,
            tokens=generated.tokens_generated,
            finish_reason=generated.finish_reason,
            prompt_format=framed.format,
        )
        context = article_context(text.title, text.body, item.topic, prompt, item.extra, meta)
        stem = item.template or DEFAULT_TEMPLATE
        seconds["post-processing"] += time.perf_counter() - started
        started = time.perf_counter()
        rendered, version = render_article(self.templates, stem, context)
        seconds["rendering"] += time.perf_counter() - started
        return WrittenArticle(
            key=item.key,
            prompt_text=prompt,
            prompt_format=framed.format,
            generation=generated,
            text=text,
            metrics=metrics,
            rendered=rendered,
            template_name=stem,
            template_version=version,
        )


def _request(item: ArticleInput, framed: FramedPrompt) -> GenerationRequest:
    return GenerationRequest(
        item.key, framed.text, item.decoding, item.seed, framed.add_special_tokens
    )


def article_meta(
    *,
    model: str,
    revision: str | None,
    preset: str | None,
    seed: int,
    words: int | None,
    perplexity: float | None,
    flags: Sequence[str],
    tokens: int,
    finish_reason: str | None,
    prompt_format: str | None,
) -> dict[str, Any]:
    """The `meta` an article template sees: how the article was written and what it measures."""
    return {
        "model": model,
        "revision": revision,
        "preset": preset,
        "seed": seed,
        "words": words,
        "perplexity": perplexity,
        "flags": list(flags),
        "tokens": tokens,
        "finish_reason": finish_reason,
        "prompt_format": prompt_format,
    }


def article_context(
    title: str,
    body: str,
    topic: str,
    prompt: str,
    extra: Mapping[str, str],
    meta: Mapping[str, Any],
) -> dict[str, Any]:
    """What article templates see: `title`, `topic`, `prompt` (the text the model was given),
    `body`, `paragraphs`, `extra` and `meta` (model, revision, preset, seed, words, perplexity,
    flags, tokens, finish reason, prompt format)."""
    return {
        "title": title,
        "topic": topic,
        "prompt": prompt,
        "body": body,
        "paragraphs": split_paragraphs(body),
        "extra": dict(extra),
        "meta": dict(meta),
    }


def render_article(
    templates: Templates, stem: str, context: Mapping[str, Any]
) -> tuple[dict[str, str], str]:
    """The article in every output format, and the version of the templates that made it.

    Raises `TemplateError` naming the template and line.
    """
    rendered, versions = {}, []
    for fmt, suffix in FORMATS.items():
        result = templates.render(stem + suffix, context)
        rendered[fmt] = result.text
        versions.append(result.version)
    return rendered, "-".join(v[:6] for v in versions)
