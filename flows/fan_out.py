"""The `fan-out` flow: one generate-articles run per shard of the pending prompts, on a work pool.

Orchestration only. Each shard is a run of a generate-articles deployment (`run_deployment`),
which the pool's workers pick up, on one machine or many, against one database; the shards are
disjoint (`GenerateParams.shard`), and claims are atomic anyway. The flow waits for the runs
and reports how each ended.
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


@flow(name="fan-out", flow_run_name="fan-out-{shards}-shards")
def fan_out(
    params: GenerateParams = GenerateParams(),  # noqa: B008 (a frozen model; Prefect's form)
    shards: Annotated[int, Field(ge=1, le=MAX_SHARDS)] = 4,
    deployment: str = DEPLOYMENT,
    timeout_seconds: Annotated[float, Field(gt=0)] = 24 * 3600,
) -> dict[str, Any]:
    """Split the pending prompts into shards and generate each in its own run on the pool.

    Args:
        params: What each shard's run does (a `limit` applies per shard).
        shards: How many runs to start; workers take them as they have room.
        deployment: The generate-articles deployment the runs belong to.
        timeout_seconds: How long to wait for the runs before reporting them as they are.
    """
    logger = get_run_logger()
    started = []
    for index in range(shards):
        shard = params.model_copy(update={"shard": index, "shards": shards})
        run = run_deployment(
            deployment,
            parameters={"params": shard.model_dump(mode="json")},
            flow_run_name=f"generate-articles-shard-{index + 1}-of-{shards}",
            timeout=0,  # start it and go on: the workers run the shards side by side
        )
        assert isinstance(run, FlowRun)  # the sync API, called from a sync flow
        started.append(run.id)
        logger.info("shard %s of %s: flow run %s", index + 1, shards, run.id)
    runs = _wait(started, timeout_seconds)
    states = {str(r.id): r.state.name if r.state else "unknown" for r in runs}
    # A shard with failed prompts finished its work: its failures are in its own summary.
    failed = [r for r, state in states.items() if state not in ("Completed", "CompletedWithErrors")]
    if failed:
        raise RuntimeError(
            f"{len(failed)} of {shards} shard runs did not complete: "
            + ", ".join(f"{run_id} ({states[run_id]})" for run_id in failed)
        )
    return {"shards": shards, "runs": states}
