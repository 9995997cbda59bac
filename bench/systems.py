"""The measured systems. Each runs one workload in the current process and returns what it
did; `bench.child` runs each in a fresh process, so loading the model stays out of the timing
and peak memory is the system's own."""

from __future__ import annotations

import os
import resource
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from articlegen.generator.loading import DType, ModelSpec, load_model, resolve_device
from articlegen.runs.reports import FINISHING_STAGES
from bench.workload import Workload

__all__ = ["Measurement", "run_baseline", "run_engine", "run_flow"]


@dataclass
class Measurement:
    """One timed run of one system over one workload."""

    system: str
    batch_size: int
    dtype: str
    device: str
    articles: int
    tokens: int
    seconds: float
    peak_rss_mb: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def articles_per_min(self) -> float:
        return 60 * self.articles / self.seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "tokens_per_s": self.tokens_per_s,
            "articles_per_min": self.articles_per_min,
        }


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB.

    Linux's VmHWM, the high-water mark of this process image: `ru_maxrss` would carry over
    the parent's peak through fork and exec (the benchmark's parent has loaded the model and
    run the batch-size probe), so every child would report at least that.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB, as on Linux


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _warm_up(engine: Any, workload: Workload) -> None:
    """A few tokens for one full batch, so one-time costs (kernel selection, allocator growth)
    stay out of the timing; the engine and the flow warm up alike."""
    from articlegen.generator.requests import GenerationRequest

    warm = workload.config().model_copy(update={"min_new_tokens": 4, "max_new_tokens": 4})
    prompts = workload.prompts[: engine.batch_size]
    engine.generate([GenerationRequest(i, p, warm, i) for i, p in enumerate(prompts)])
    _sync(engine.loaded.device)


def run_baseline(model_dir: str, workload: Workload, device: str) -> Measurement:
    """What the tutorials do: load with `from_pretrained`, then `generate` one prompt at a time.

    Same model, prompts and decoding settings (mapped through our `GenerationConfig`), in
    float32 as `from_pretrained` loads by default.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = resolve_device(device)  # type: ignore[arg-type]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir)
    model.to(target)
    eos = tokenizer.eos_token_id
    config = workload.config().to_generation_config(eos, eos)
    warm = workload.config().model_copy(update={"min_new_tokens": 4, "max_new_tokens": 4})
    model.generate(
        **tokenizer("Warm up", return_tensors="pt").to(target),
        generation_config=warm.to_generation_config(eos, eos),
    )
    _sync(target)
    tokens = 0
    started = time.perf_counter()
    for index, prompt in enumerate(workload.prompts):
        torch.manual_seed(index)
        inputs = tokenizer(prompt, return_tensors="pt").to(target)
        output = model.generate(**inputs, generation_config=config)
        tokens += output.shape[1] - inputs["input_ids"].shape[1]
    _sync(target)
    seconds = time.perf_counter() - started
    return Measurement(
        "baseline", 1, "float32", target.type, len(workload.prompts), tokens, seconds, peak_rss_mb()
    )


def run_engine(
    model_dir: str,
    workload: Workload,
    device: str,
    dtype: DType,
    batch_size: int,
    cache_budget: bool = True,
) -> Measurement:
    """Our engine alone: no database, no Prefect. With `cache_budget`, batches keep to the
    key/value cache budget a run uses (ARTICLEGEN_KV_CACHE_MB or its default); without it,
    every batch has `batch_size` rows, as the batch-size sweep wants."""
    from articlegen.core.settings import load_settings
    from articlegen.generator.batching import cache_tokens
    from articlegen.generator.engine import Engine
    from articlegen.generator.requests import GenerationRequest

    loaded = load_model(ModelSpec(model_dir, device=device, dtype=dtype))  # type: ignore[arg-type]
    budget = cache_tokens(loaded, load_settings().kv_cache_mb) if cache_budget else None
    engine = Engine(loaded, batch_size=batch_size, cache_tokens=budget)
    config = workload.config()
    _warm_up(engine, workload)
    requests = [GenerationRequest(i, p, config, i) for i, p in enumerate(workload.prompts)]
    started = time.perf_counter()
    outcomes = engine.generate(requests)
    _sync(loaded.device)
    seconds = time.perf_counter() - started
    tokens = sum(getattr(o, "tokens_generated", 0) for o in outcomes)
    return Measurement(
        "engine",
        batch_size,
        str(loaded.dtype).removeprefix("torch."),
        loaded.device.type,
        len(outcomes),
        tokens,
        seconds,
        peak_rss_mb(),
    )


def run_flow(
    model_dir: str,
    workload: Workload,
    device: str,
    dtype: DType,
    batch_size: int,
    system: str = "flow",
) -> Measurement:
    """The whole `generate-articles` flow on a fresh SQLite file: claim, generate, post-process,
    render, write back, artifacts. Needs PREFECT_API_URL (the parent's server)."""
    from sqlalchemy import func, select

    from articlegen.db import Article, Database
    from articlegen.db.prompts import apply_upsert, plan_upsert
    from articlegen.flows.generate import run_generate
    from articlegen.generator.engine import Engine
    from articlegen.importing import PromptSpec
    from articlegen.runs import GenerateParams, close_contexts

    folder = Path(tempfile.mkdtemp(prefix="articlegen-bench-"))
    url = f"sqlite:///{folder / 'bench.db'}"
    os.environ.update(
        ARTICLEGEN_DATABASE_URL=url,
        ARTICLEGEN_MODEL=model_dir,
        ARTICLEGEN_DEVICE=device,
        ARTICLEGEN_DTYPE=dtype,
    )
    db = Database.open(url)
    specs = [
        PromptSpec(topic=f"Benchmark prompt {i}", prompt=p, external_id=f"bench-{i}")
        for i, p in enumerate(workload.prompts)
    ]
    with db.session() as session:
        apply_upsert(session, plan_upsert(session, specs))
    # The model loads once per process; load it (and warm it up) before the clock starts,
    # as a long-lived worker would have.
    loaded = load_model(ModelSpec(model_dir, device=device, dtype=dtype))  # type: ignore[arg-type]
    _warm_up(Engine(loaded, batch_size), workload)
    params = GenerateParams(
        batch_size=batch_size, preset=workload.preset, overrides=workload.overrides
    )
    started = time.perf_counter()
    result = run_generate(params)
    seconds = time.perf_counter() - started
    with db.session(write=False) as session:
        articles, tokens = session.execute(
            select(func.count(), func.coalesce(func.sum(Article.tokens_generated), 0))
        ).one()
    db.close()
    close_contexts()
    stages = dict(result.seconds)
    # The flow's own clock starts inside the flow; what Prefect does before and after it
    # (creating the flow run, reporting its state) is orchestration too. The finishing stages
    # ran beside generation: they are not part of the flow's own time.
    serial = sum(v for k, v in stages.items() if k not in FINISHING_STAGES)
    stages["orchestration"] += max(0.0, seconds - serial)
    return Measurement(
        system,
        batch_size,
        str(loaded.dtype).removeprefix("torch."),
        loaded.device.type,
        int(articles),
        int(tokens),
        seconds,
        peak_rss_mb(),
        stages,
    )
