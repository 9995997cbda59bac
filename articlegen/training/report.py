"""The end-of-run summary of a training run (a Prefect markdown artifact)."""

from __future__ import annotations

import re

from articlegen.training.result import TrainResult

__all__ = ["summary_markdown"]


def summary_markdown(result: TrainResult) -> str:
    """The run in a few lines: where the model is, how far perplexity fell, what to watch."""
    evaluated = result.epochs
    lines = [f"# Model {result.name}: ready", ""]
    if evaluated:
        first, best = evaluated[0], result.best
        lines.append(
            f"Eval perplexity {first['eval_perplexity']:.2f} before training, "
            f"{best['eval_perplexity']:.2f} at its best (epoch {best['epoch']})"
            + (", stopped early." if result.stopped_early else ".")
        )
    corpus = result.corpus
    lines += [
        "",
        f"Corpus `{corpus['hash'][:12]}`: {corpus['train_documents']} documents to train on, "
        f"{corpus['eval_documents']} held out, {result.train_tokens:,} training tokens; "
        f"{result.tokens_per_second:,.0f} tokens/s.",
        "",
        f"Weights in `{result.directory / 'model'}`, loss curve in `{result.loss_curve}`.",
    ]
    memorisation = result.memorisation
    if memorisation is not None:
        verdict = "**flagged**" if memorisation.flagged else "under the limit"
        lines += [
            "",
            "## Memorisation",
            "",
            f"Longest verbatim overlap with the training text in {memorisation.samples} "
            f"samples: {memorisation.longest_overlap} tokens ({verdict}, limit "
            f"{memorisation.limit}).",
        ]
        if memorisation.example:
            # Model text, in a code block whose fence is longer than any run of backticks in
            # it: shown as text, never as links, images or HTML, wherever it is rendered.
            example = memorisation.example
            fence = "`" * (max((len(r) for r in re.findall(r"`+", example)), default=0) + 3)
            lines += ["", fence + "text", example, fence]
    if result.warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in result.warnings]
    lines += ["", f"Generate with it: `articlegen generate --model {result.name}`."]
    return "\n".join(lines)
