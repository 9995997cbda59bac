"""A child `articlegen generate` for the reliability tests, steered through the run's own seam
(`runs.observing_batches`):

    python -m tests.run_child kill STEP NUMBER [generate's options...]
    python -m tests.run_child together DIR COUNT [generate's options...]

`kill`: the run goes as any run does, through the real CLI, flow, Prefect server and database,
until step STEP of batch NUMBER starts (claim, generate, finish, record, close); there the
process kills itself with SIGKILL: no handler, no `finally`, no rollback sent, exactly as the
kernel's OOM killer or a pulled plug would end it.

`together`: the run claims its first batch, then waits until COUNT runs have (each leaves a
file in DIR) before it generates: runs started at once then also start working at once, whatever
their processes' start-up took (imports, loading the model), and what is left to show is how
they share the queue.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from articlegen.cli import cli
from articlegen.runs import BatchStep, observing_batches

# How long a run waits for the others before it goes on alone (the test then fails).
PATIENCE = 120.0


def main() -> None:
    """Run `generate` with the given options, steered as the first arguments say."""
    mode, first, second, *options = sys.argv[1:]

    def kill(job_id: int, batch: int, step: BatchStep) -> None:
        if step == first and batch == int(second):
            os.kill(os.getpid(), signal.SIGKILL)

    def together(job_id: int, batch: int, step: BatchStep) -> None:
        if (batch, step) != (1, "generate"):
            return
        ready = Path(first)
        (ready / str(os.getpid())).touch()
        deadline = time.monotonic() + PATIENCE
        while len(list(ready.iterdir())) < int(second) and time.monotonic() < deadline:
            time.sleep(0.05)

    with observing_batches(kill if mode == "kill" else together):
        cli.main(args=["generate", *options], prog_name="articlegen")


if __name__ == "__main__":
    main()
