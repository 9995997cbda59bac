"""Runs one measurement in this (fresh) process: `python -m bench.child < spec.json`.

The JSON (on standard input: a thousand prompts are too long for a command line) names the
system and its arguments; the measurement comes back as the last line of standard output, as
JSON.
"""

from __future__ import annotations

import json
import sys

from bench.systems import run_baseline, run_engine, run_flow
from bench.workload import Workload


def main(argv: list[str]) -> None:
    spec = json.loads(argv[1] if len(argv) > 1 else sys.stdin.read())
    workload = Workload(tuple(spec["prompts"]), spec["new_tokens"], spec["preset"])
    system = spec["system"]
    if system == "baseline":
        result = run_baseline(spec["model"], workload, spec["device"])
    elif system == "engine":
        result = run_engine(
            spec["model"],
            workload,
            spec["device"],
            spec["dtype"],
            spec["batch_size"],
            spec.get("cache_budget", True),
        )
    else:
        result = run_flow(
            spec["model"], workload, spec["device"], spec["dtype"], spec["batch_size"], system
        )
    print(json.dumps(result.as_dict()))


if __name__ == "__main__":
    main(sys.argv)
