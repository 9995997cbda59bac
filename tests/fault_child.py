"""The fault-injection test's child: `articlegen generate`, killed by SIGKILL at one step.

    python -m tests.fault_child STEP NUMBER [generate's options...]

The run goes as any run does, through the real CLI, flow, Prefect server and database, until
step STEP of batch NUMBER starts (`runs.observing_batches`: claim, generate, finish, record,
close); there the process kills itself at once, with SIGKILL: no handler, no `finally`, no
rollback sent, exactly as the kernel's OOM killer or a pulled plug would end it.
"""

from __future__ import annotations

import os
import signal
import sys

from articlegen.cli import cli
from articlegen.runs import BatchStep, observing_batches


def main() -> None:
    """Run `generate` with the given options and die at the named step."""
    step, number, *options = sys.argv[1:]

    def observe(job_id: int, batch: int, at: BatchStep) -> None:
        if at == step and batch == int(number):
            os.kill(os.getpid(), signal.SIGKILL)

    with observing_batches(observe):
        cli.main(args=["generate", *options], prog_name="articlegen")


if __name__ == "__main__":
    main()
