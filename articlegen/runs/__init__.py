"""The steps of a generation run, each one call the `generate-articles` flow makes as a task.

open a job → fix the batch size → start it → claim a batch from the shared queue, generate it,
then finish it (post-process, render, record in one transaction) beside the next one's claim
and generation, until the queue is empty → finish the job. Nothing here imports Prefect, so
every step runs and is tested on its own.

- `params`: `GenerateParams`, what a run does;
- `context`: the per-process `RunContext` (database, presets, templates, models, budgets);
- `plan`: claiming and batching; `batch`: generating and finishing one batch; `lifecycle`:
  the job around them;
- `reports`: `BatchReport` and `RunResult`; `artifacts`: their text for Prefect;
- `progress`: how far a running batch is, article by article, for displays.
"""

from articlegen.runs.artifacts import plan_markdown, summary_markdown
from articlegen.runs.batch import (
    GeneratedBatch,
    finish_batch,
    generate_batch,
    write_batch,
)
from articlegen.runs.context import RunContext, close_contexts, context_for
from articlegen.runs.form import params_from_form
from articlegen.runs.lifecycle import (
    abandon,
    abandoned,
    batch_size_known,
    cancel_requested,
    check_model_fits,
    check_params,
    choose_batch_size,
    finish_run,
    frames_prompts,
    leases_kept,
    open_job,
)
from articlegen.runs.observe import BatchStep, observing_batches
from articlegen.runs.params import GenerateParams
from articlegen.runs.plan import RunPlan, claim_batch, claimable, plan_run, start_run
from articlegen.runs.progress import ProgressSnapshot, RunProgress, progress_for
from articlegen.runs.reports import BatchReport, RunResult, stage_seconds

__all__ = [
    "BatchReport",
    "BatchStep",
    "GenerateParams",
    "GeneratedBatch",
    "ProgressSnapshot",
    "RunContext",
    "RunPlan",
    "RunProgress",
    "RunResult",
    "abandon",
    "abandoned",
    "batch_size_known",
    "cancel_requested",
    "check_model_fits",
    "check_params",
    "choose_batch_size",
    "claim_batch",
    "claimable",
    "close_contexts",
    "context_for",
    "finish_batch",
    "finish_run",
    "frames_prompts",
    "generate_batch",
    "leases_kept",
    "observing_batches",
    "open_job",
    "params_from_form",
    "plan_markdown",
    "plan_run",
    "progress_for",
    "stage_seconds",
    "start_run",
    "summary_markdown",
    "write_batch",
]
