"""Rows as plain dicts for output and export: one shape per entity, used by every format."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from articlegen.db.models import Article, Job, ModelKind, Prompt, RegisteredModel, ReviewEvent

__all__ = [
    "ARTICLE_COLUMNS",
    "JOB_COLUMNS",
    "MODEL_COLUMNS",
    "RANDOM_WEIGHTS_NOTE",
    "article_columns",
    "article_record",
    "epoch_records",
    "event_record",
    "job_record",
    "kind_note",
    "model_record",
    "prompt_record",
]

# What a table shows; CSV and JSON carry every field.
ARTICLE_COLUMNS = [
    "id", "job_id", "external_id", "variant", "version", "title", "words", "perplexity",
    "flags", "review_status",
]  # fmt: skip
# What every place that shows an article of random weights says about it, and only about it:
# such text looks like an article at a glance, and must never pass for one.
RANDOM_WEIGHTS_NOTE = "random weights — noise, not an article"
JOB_COLUMNS = ["id", "status", "model", "total", "done", "failed", "created_at", "finished_at"]
MODEL_COLUMNS = [
    "name", "kind", "status", "base", "best_epoch", "eval_perplexity", "memorised_tokens",
    "articles", "created_at",
]  # fmt: skip


def kind_note(kind: ModelKind | str | None) -> str | None:
    """The warning an article of a model of `kind` carries: for random weights, else none."""
    return RANDOM_WEIGHTS_NOTE if kind == ModelKind.RANDOM else None


def article_columns(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The table's columns for `records`: ARTICLE_COLUMNS, and `warning` when one of them was
    written by random weights (a column of blanks would be clutter everywhere else)."""
    noisy = any(r.get("warning") for r in records)
    return [*ARTICLE_COLUMNS, "warning"] if noisy else list(ARTICLE_COLUMNS)


def prompt_record(prompt: Prompt) -> dict[str, Any]:
    """A prompt, every field."""
    return {
        "id": prompt.id,
        "external_id": prompt.external_id,
        "topic": prompt.topic,
        "status": prompt.status,
        "priority": prompt.priority,
        "variants": prompt.variants,
        "preset": prompt.preset,
        "prompt_format": prompt.prompt_format,
        "system": prompt.system,
        "template": prompt.template,
        "tags": prompt.tags,
        "decoding": prompt.decoding,
        "extra": prompt.extra,
        "prompt": prompt.prompt,
        "attempts": prompt.attempts,
        "last_error": prompt.last_error,
        "errors": prompt.errors or [],
        "created_at": prompt.created_at,
        "updated_at": prompt.updated_at,
    }


def job_record(job: Job) -> dict[str, Any]:
    """A job, every field."""
    return {
        "id": job.id,
        "status": job.status,
        "model": job.model,
        "model_revision": job.model_revision,
        "total": job.total,
        "done": job.done,
        "failed": job.failed,
        "parameters": job.parameters,
        "flow_run_id": job.flow_run_id,
        "error": job.error,
        "lease_expires_at": job.lease_expires_at,
        "cancel_requested": job.cancel_requested,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def article_record(article: Article) -> dict[str, Any]:
    """An article with its prompt's identity and every field a reviewer or an export needs.

    `title`, `body`, `markdown` and `html` are the editor's when the article was edited (the
    generated ones stay in `generated_title` and `generated_body`). `model_kind` is the kind of
    the model that wrote it (None for articles older than the registry's kinds); `warning`,
    RANDOM_WEIGHTS_NOTE for random weights, else None.
    """
    metrics = article.metrics
    rendered = article.edited_rendered or article.rendered
    return {
        "id": article.id,
        "prompt_id": article.prompt_id,
        "external_id": article.prompt.external_id,
        "topic": article.prompt.topic,
        "title": article.edited_title or article.title,
        "body": article.edited_body or article.body,
        "markdown": rendered.get("markdown"),
        "html": rendered.get("html"),
        "edited": article.edited_body is not None,
        "edited_by": article.edited_by,
        "edited_at": article.edited_at,
        "generated_title": article.title,
        "generated_body": article.body,
        "review_status": article.review_status,
        "reviewer_note": article.reviewer_note,
        "reviewed_by": article.reviewed_by,
        "seed": article.seed,
        "model": article.model_name,
        "model_revision": article.model_revision,
        "model_kind": article.model_kind,
        "warning": kind_note(article.model_kind),
        "preset": article.preset,
        "decoding": article.decoding,
        "metrics": metrics,
        "words": metrics.get("word_count"),
        "perplexity": round(metrics["perplexity"], 1) if metrics.get("perplexity") else None,
        "flags": metrics.get("flags", []),
        "prompt_text": article.prompt_text,
        "prompt_format": article.prompt_format,
        "tokens_generated": article.tokens_generated,
        "prompt_tokens": article.prompt_tokens,
        "finish_reason": article.finish_reason,
        "template": article.template_name,
        "template_version": article.template_version,
        "job_id": article.job_id,
        "variant": article.variant,
        "version": article.version,
        "generation_seconds": article.generation_seconds,
        "created_at": article.created_at,
        "reviewed_at": article.reviewed_at,
    }


def event_record(event: ReviewEvent) -> dict[str, Any]:
    """One row of an article's audit trail, in plain values (it nests inside a record)."""
    return {
        "when": event.created_at.isoformat(timespec="seconds"),
        "actor": event.actor,
        "action": event.action.value,
        "status_before": event.status_before.value,
        "status_after": event.status_after.value,
        "note": event.note,
        "details": event.details,
    }


def model_record(model: RegisteredModel, articles: int) -> dict[str, Any]:
    """A registered model, every field, with how many articles it wrote."""
    best = next((e for e in model.epochs if e.get("epoch") == model.best_epoch), None)
    return {
        "id": model.id,
        "name": model.name,
        "kind": model.kind,
        "status": model.status,
        "source": model.source,
        "revision": model.revision,
        "base": model.base,
        "base_revision": model.base_revision,
        "best_epoch": model.best_epoch,
        "eval_loss": best.get("eval_loss") if best else None,
        "eval_perplexity": round(best["eval_perplexity"], 2) if best else None,
        "memorised_tokens": model.memorisation.get("longest_overlap"),
        "memorisation": model.memorisation,
        "epochs": model.epochs,
        "hyperparameters": model.hyperparameters,
        "corpus_hash": model.corpus_hash,
        "corpus": model.corpus,
        "progress": model.progress,
        "error": model.error,
        "articles": articles,
        "created_at": model.created_at,
        "finished_at": model.finished_at,
    }


def epoch_records(epochs: list[dict[str, Any]], best: int | None) -> list[dict[str, Any]]:
    """A model's evaluations, one row each: epoch 0 is the starting model, before training."""
    return [
        {
            "epoch": e["epoch"],
            "step": e["step"],
            "train_loss": None if e.get("train_loss") is None else round(e["train_loss"], 4),
            "eval_loss": round(e["eval_loss"], 4),
            "eval_perplexity": round(e["eval_perplexity"], 2),
            "best": "yes" if e["epoch"] == best else "",
        }
        for e in epochs
    ]
