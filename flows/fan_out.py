"""The `fan-out` flow: N generate-articles runs on a work pool, pulling from one queue.

Orchestration only. Each run is a run of a generate-articles deployment (`run_deployment`),
which the pool's workers pick up, on one machine or many, against one database. The runs share
the queue (each claims a batch at a time), so they end together whatever their speed; with
`sharded`, each takes only its shard of the prompts (by id) instead. The flow waits for the
runs and reports how each ended.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from pydantic import Field

from articlegen.core.bounds import MAX_SHARDS
from articlegen.runs import GenerateParams

__all__ = ["fan_out"]

DEPLOYMENT = "generate-articles/articlegen"


def _wait(run_ids: list[Any], timeout: float, poll: float = 2.0) -> list[FlowRun]:
    """The runs, once every one has reached a final state (or `timeout` has passed)."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = [client.read_flow_run(run_id) for run_id in run_ids]
            if all(r.state is not None and r.state.is_final() for r in runs):
                return runs
            if time.monotonic() > deadline:
                return runs
            time.sleep(poll)


@flow(name="fan-out", flow_run_name="fan-out-{runs}-runs")
def fan_out(
    params: GenerateParams = GenerateParams(),  # noqa: B008 (a frozen model; Prefect's form)
    runs: Annotated[int, Field(ge=1, le=MAX_SHARDS)] = 4,
    sharded: bool = False,
    deployment: str = DEPLOYMENT,
    timeout_seconds: Annotated[float, Field(gt=0)] = 24 * 3600,
) -> dict[str, Any]:
    """Start `runs` generate-articles runs on the pool, pulling from one queue, and wait.

    Args:
        params: What each run does (a `limit` applies per run).
        runs: How many runs to start; workers take them as they have room.
        sharded: Give each run its own shard of the prompts (by id) instead of one shared
            queue: runs then never meet, and the slowest shard decides when all are done.
        deployment: The generate-articles deployment the runs belong to.
        timeout_seconds: How long to wait for the runs before reporting them as they are.
    """
    logger = get_run_logger()
    started = []
    for index in range(runs):
        own = {"shard": index, "shards": runs} if sharded else {}
        run = run_deployment(
            deployment,
            parameters={"params": params.model_copy(update=own).model_dump(mode="json")},
            flow_run_name=f"generate-articles-{index + 1}-of-{runs}",
            timeout=0,  # start it and go on: the workers run the runs side by side
        )
        assert isinstance(run, FlowRun)  # the sync API, called from a sync flow
        started.append(run.id)
        logger.info("run %s of %s: flow run %s", index + 1, runs, run.id)
    ended = _wait(started, timeout_seconds)
    states = {str(r.id): r.state.name if r.state else "unknown" for r in ended}
    # A run with failed prompts finished its work: its failures are in its own summary.
    failed = [r for r, state in states.items() if state not in ("Completed", "CompletedWithErrors")]
    if failed:
        raise RuntimeError(
            f"{len(failed)} of {runs} runs did not complete: "
            + ", ".join(f"{run_id} ({states[run_id]})" for run_id in failed)
        )
    return {"runs": states, "sharded": sharded}
