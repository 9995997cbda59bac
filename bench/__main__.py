"""`python -m bench`: measure the baseline, the engine and the flow, interleaved, and report."""

from __future__ import annotations

import json
import os
import platform
import shlex
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from articlegen.cli.prefect_env import quiet_prefect
from bench.report import summarise, targets, write_results
from bench.workload import Workload, make_workload
from bench.workload import model_dir as bench_model

ROOT = Path(__file__).resolve().parent

# Prefect as the CLI runs it (set before it is imported: no telemetry, loopback only), and the
# local benchmark models never need the Hub. The measuring processes inherit all of it.
quiet_prefect("WARNING")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _child_env(api_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PREFECT_API_URL=api_url,
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT.parent), os.environ.get("PYTHONPATH")])),
    )
    return env


def _measure(env: dict[str, str], label: str, **spec: Any) -> dict[str, Any]:
    """One measurement in a fresh process; its JSON is the last line it prints."""
    workload: Workload = spec.pop("workload")
    payload = {
        **spec,
        "prompts": list(workload.prompts),
        "new_tokens": workload.new_tokens,
        "preset": workload.preset,
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench.child"],
        input=json.dumps(payload),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise click.ClickException(f"{label} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["label"] = label
    click.echo(
        f"  {label:<16} batch {result['batch_size']:>3}  {result['tokens_per_s']:8.1f} tokens/s"
        f"  {result['seconds']:7.1f} s  peak {result['peak_rss_mb']:6.0f} MiB",
        err=True,
    )
    return result


def _machine() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} CPUs"


def _sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", help="Model directory  [default: a GPT-2-small-shaped random model]")
@click.option("--prompts", default=64, show_default=True, help="Prompts in the workload.")
@click.option("--new-tokens", default=128, show_default=True, help="Tokens per article.")
@click.option("--preset", default="nucleus", show_default=True, help="Decoding preset.")
@click.option("--repeats", default=3, show_default=True, help="Interleaved runs per system.")
@click.option(
    "--batch-size",
    default="auto",
    show_default=True,
    help="Engine and flow batch size, or auto (chosen from the hardware, cached).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option(
    "--dtype",
    default="float32",
    show_default=True,
    help="Engine and flow precision (the baseline stays float32).",
)
@click.option("--extra-dtype", help="Also measure the engine in this precision, e.g. bfloat16.")
@click.option(
    "--sweep",
    default="1,4,16,32,64",
    show_default=True,
    help="Batch sizes for the engine's throughput curve; empty to skip.",
)
@click.option(
    "--scaling",
    default="10,100,1000",
    show_default=True,
    help="Prompt counts for the orchestration-overhead run (tiny model); empty to skip.",
)
@click.option("--no-baseline", is_flag=True, help="Skip the (slow) one-at-a-time baseline.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=ROOT / "results",
    show_default=True,
    help="Folder for the JSON, Markdown and PNG results.",
)
@click.option("--name", default="latest", show_default=True, help="Stem of the result files.")
def main(
    model: str | None,
    prompts: int,
    new_tokens: int,
    preset: str,
    repeats: int,
    batch_size: str,
    device: str,
    dtype: str,
    extra_dtype: str | None,
    sweep: str,
    scaling: str,
    no_baseline: bool,
    out: Path,
    name: str,
) -> None:
    """Measure one-at-a-time transformers, the engine and the flow on one workload.

    Example: python -m bench --repeats 3 --extra-dtype bfloat16
    """
    import torch
    import transformers
    from prefect.server.api.server import SubprocessASGIServer

    model_dir = model or bench_model("small")
    workload = make_workload(prompts, new_tokens, preset)
    size = _batch_size(batch_size, model_dir, device, dtype)
    click.echo(f"workload: {prompts} prompts x {new_tokens} tokens; batch size {size}", err=True)
    server = SubprocessASGIServer(port=_free_port())
    server.start(timeout=120)
    try:
        env = _child_env(server.api_url)
        common = {"model": model_dir, "device": device, "workload": workload}
        plan: list[tuple[str, dict[str, Any]]] = []
        if not no_baseline:
            plan.append(("baseline", {"system": "baseline", "dtype": "float32", "batch_size": 1}))
        plan.append(("engine", {"system": "engine", "dtype": dtype, "batch_size": size}))
        plan.append(("flow", {"system": "flow", "dtype": dtype, "batch_size": size}))
        if extra_dtype:
            plan.append(
                (
                    f"engine@{extra_dtype}",
                    {"system": "engine", "dtype": extra_dtype, "batch_size": size},
                )
            )
        runs = []
        for rep in range(repeats):
            click.echo(f"round {rep + 1} of {repeats}", err=True)
            # Interleaved, each round starting one system later, so a slow spell of the
            # machine falls on every system alike.
            for label, spec in plan[rep % len(plan) :] + plan[: rep % len(plan)]:
                runs.append(_measure(env, label, **common, **spec))
        swept = []
        if _sizes(sweep):
            click.echo("sweep", err=True)
        for b in _sizes(sweep):
            part = Workload(workload.prompts[: max(16, 2 * b)], new_tokens, preset)
            swept.append(
                _measure(
                    env,
                    f"engine@{b}",
                    **{**common, "workload": part},
                    system="engine",
                    dtype=dtype,
                    batch_size=b,
                    # The curve is throughput against rows: no cache budget cuts a batch.
                    cache_budget=False,
                )
            )
        scaled = []
        if _sizes(scaling):
            click.echo("scaling (tiny model)", err=True)
            tiny = bench_model("tiny")
        for n in _sizes(scaling):
            run = _measure(
                env,
                f"flow x{n}",
                model=tiny,
                device=device,
                workload=make_workload(n, 16, preset),
                system="flow",
                dtype="float32",
                batch_size=64,
            )
            generation = run["stages"]["generation"]
            run.update(
                prompts=n,
                generation_seconds=generation,
                overhead_ms_per_prompt=1000 * (run["seconds"] - generation) / n,
            )
            scaled.append(run)
    finally:
        server.stop()
    summary = summarise(runs)
    result = {
        "command": "python -m bench " + shlex.join(sys.argv[1:]),
        "environment": {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": _machine(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
        },
        "workload": {"prompts": prompts, "new_tokens": new_tokens, "preset": preset},
        "repeats": repeats,
        "systems": summary,
        "targets": [
            {**t.__dict__, "passed": t.passed, "verdict": t.verdict}
            for t in targets(summary, scaled)
        ],
        "sweep": swept,
        "scaling": scaled,
        "runs": runs,
    }
    paths = write_results(result, out, name)
    click.echo(paths[1].read_text(encoding="utf-8"))
    click.echo("written: " + ", ".join(str(p) for p in paths), err=True)


def _batch_size(value: str, model_dir: str, device: str, dtype: str) -> int:
    """An explicit size, or what `generate` would choose on this machine (the same cache)."""
    if value != "auto":
        return int(value)
    from articlegen.core.settings import load_settings
    from articlegen.generator.batching import auto_batch_size
    from articlegen.generator.loading import ModelSpec, load_model

    settings = load_settings()
    loaded = load_model(ModelSpec(model_dir, device=device, dtype=dtype))  # type: ignore[arg-type]
    return auto_batch_size(loaded, settings.cache_dir, settings.kv_cache_mb)


if __name__ == "__main__":
    main()
