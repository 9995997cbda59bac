"""Continuous batching, every stop token and embedding noise, across architectures.

Each architecture is a tiny random model built here from its transformers config, with the
tiny GPT-2's tokenizer: what the engine does with it depends on the architecture's attention,
cache, embedding module and generation config, not on trained weights.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from sqlalchemy import select
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from articlegen.db import Article
from articlegen.generator import PresetCatalog
from articlegen.generator.decoding import DecodingConfig
from articlegen.generator.engine import Engine
from articlegen.generator.loading import LoadedModel, ModelSpec, load_model
from articlegen.generator.requests import (
    DecodeStep,
    Generation,
    GenerationFailure,
    GenerationRequest,
)
from articlegen.runs import (
    GenerateParams,
    claim_batch,
    finish_run,
    open_job,
    start_run,
    write_batch,
)
from tests.queue_support import (
    PROMPTS,
    OutOfMemoryAbove,
    generations,
    mixed_requests,
    seeded_run,
)

# Small enough to run in a second, large enough to have real heads and layers. Gemma-2 and
# Mistral bring sliding windows shorter than the context (transformers' own cache, the batch
# loop); the others run through continuous batching.
_SHAPE = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4}
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "gpt2": {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 256},
    "llama": {**_SHAPE, "intermediate_size": 64, "num_key_value_heads": 2},
    "qwen2": {**_SHAPE, "intermediate_size": 64, "num_key_value_heads": 2},
    "gemma": {**_SHAPE, "intermediate_size": 64, "num_key_value_heads": 1, "head_dim": 8},
    "gemma2": {
        **_SHAPE,
        "intermediate_size": 64,
        "num_key_value_heads": 1,
        "head_dim": 8,
        "sliding_window": 16,
    },
    "mistral": {
        **_SHAPE,
        "intermediate_size": 64,
        "num_key_value_heads": 2,
        "sliding_window": 16,
    },
    "gpt_neox": {**_SHAPE, "intermediate_size": 64},
    # GPT-Neo's local layers place their window by key column: batch loop.
    "gpt_neo": {
        "hidden_size": 32,
        "num_layers": 2,
        "num_heads": 4,
        "attention_types": [[["global", "local"], 1]],
        "window_size": 8,
    },
    "opt": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "ffn_dim": 64,
        "word_embed_proj_dim": 32,
    },
    "phi3": {**_SHAPE, "intermediate_size": 64},
}


def _build(kind: str, tokenizer_dir: Path, path: Path) -> LoadedModel:
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    eos = tokenizer.eos_token_id
    config = AutoConfig.for_model(
        kind,
        vocab_size=len(tokenizer),
        max_position_embeddings=256,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
        **ARCHITECTURES[kind],
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return load_model(ModelSpec(str(path), device="cpu", dtype="float32"))


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def arch_model(
    request: pytest.FixtureRequest, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> LoadedModel:
    kind: str = request.param
    return _build(kind, tiny_model_dir, tmp_path_factory.mktemp(kind))


def test_rows_leave_and_join_without_changing_any_article(arch_model: LoadedModel) -> None:
    requests = mixed_requests(PROMPTS)
    alone = [generations(Engine(arch_model, batch_size=1), [r])[0] for r in requests]
    steps: list[DecodeStep] = []
    engine = Engine(arch_model, batch_size=3)
    shared = generations(engine, requests, on_step=steps.append)
    assert [g.token_ids for g in shared] == [g.token_ids for g in alone]
    assert [g.finish_reason for g in shared] == ["length"] * len(requests)
    assert [len(g.token_ids) for g in shared] == [r.config.max_new_tokens for r in requests]
    if engine.continuous:
        # Three rows worked through ten articles: after rows finished, the next step still
        # had three rows running, so newcomers took the freed rows.
        refilled = [
            i for i in range(1, len(steps)) if steps[i - 1].finished and steps[i].tokens == 3
        ]
        assert refilled
        assert {g.batch_size for g in shared} == {3}
    else:
        # Sliding windows shorter than the context: transformers' cache, the batch loop.
        assert arch_model.model.config.model_type in {"gemma2", "mistral", "gpt_neo"}


def test_the_next_calls_articles_go_on_from_this_one(arch_model: LoadedModel) -> None:
    """The next call's requests (`ahead`) start in this call's tail and go on in their own
    call, each the same as alone, on every architecture (tests/test_carried_queue.py)."""
    requests = mixed_requests(PROMPTS)
    alone = [generations(Engine(arch_model, batch_size=1), [r])[0] for r in requests]
    engine = Engine(arch_model, batch_size=3)
    first = generations(engine, requests[:5], ahead=requests[5:])
    steps: list[DecodeStep] = []
    second = generations(engine, requests[5:], on_step=steps.append)
    assert [g.token_ids for g in first + second] == [g.token_ids for g in alone]
    made_here = sum(s.tokens for s in steps)
    # Where rows refill, some of the second call's tokens came in the first; else none.
    assert (made_here < sum(g.tokens_generated for g in second)) == engine.continuous


def test_continuous_and_batch_loop_write_the_same_articles(tiny_model: LoadedModel) -> None:
    requests = mixed_requests(PROMPTS * 2)
    loop = generations(Engine(tiny_model, batch_size=4, continuous=False), requests)
    queue = generations(Engine(tiny_model, batch_size=4), requests)
    assert [g.token_ids for g in queue] == [g.token_ids for g in loop]
    for a, b in zip(queue, loop, strict=True):
        assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=1e-4)


@pytest.mark.parametrize("continuous", [True, False])
def test_ngram_blocking_never_sees_another_rows_padding(
    tiny_model: LoadedModel, continuous: bool
) -> None:
    """An empty prompt is the end-of-text token alone, GPT-2's pad: beside a longer prompt its
    row is padded with that same id, which n-gram blocking must not take for its text."""
    config = DecodingConfig(top_p=0.95, no_repeat_ngram_size=2, max_new_tokens=10)
    requests = [
        GenerationRequest(i, prompt, config, seed=i)
        for i, prompt in enumerate(["", PROMPTS[4], "x", PROMPTS[2], ""])
    ]
    alone = [generations(Engine(tiny_model, batch_size=1), [r])[0] for r in requests]
    shared = generations(Engine(tiny_model, batch_size=2, continuous=continuous), requests)
    assert [g.token_ids for g in shared] == [g.token_ids for g in alone]


def test_out_of_memory_halves_the_rows_in_use(tiny_model: LoadedModel) -> None:
    limited = OutOfMemoryAbove(tiny_model.model, limit=1)
    config = DecodingConfig(max_new_tokens=5)
    requests = [GenerationRequest(i, p, config, seed=i) for i, p in enumerate(PROMPTS[:3])]
    out = generations(Engine(replace(tiny_model, model=limited), batch_size=64), requests)
    # Three requests use three rows of the 64 allowed: one failure (3 rows), then 1 row works.
    assert limited.failures == 1
    assert {g.batch_size for g in out} == {1}
    alone = [generations(Engine(tiny_model, batch_size=1), [r])[0] for r in requests]
    assert [g.token_ids for g in out] == [g.token_ids for g in alone]


def _first_token(loaded: LoadedModel, config: DecodingConfig, at: int) -> int:
    """The token an article makes at step `at` when nothing stops it."""
    free = config.model_copy(update={"min_new_tokens": at + 1, "max_new_tokens": at + 1})
    g = generations(Engine(loaded), [GenerationRequest(0, PROMPTS[0], free, seed=1)])[0]
    return g.token_ids[at]


def _with_generation_eos(loaded: LoadedModel, ids: list[int]) -> LoadedModel:
    """The same weights with a generation_config that ends on `ids`, as instruct models'
    do (Llama-3.1: 128001/128008/128009)."""
    model = loaded.model
    config = model.generation_config.__class__.from_dict(model.generation_config.to_dict())
    config.eos_token_id = ids

    class _Model(torch.nn.Module):  # the same model, another generation_config
        def __init__(self) -> None:
            super().__init__()
            self.inner = model
            self.config = model.config
            self.generation_config = config

        def get_input_embeddings(self) -> Any:
            return model.get_input_embeddings()

        def forward(self, **kwargs: Any) -> Any:
            return model(**kwargs)

        def generate(self, **kwargs: Any) -> Any:
            return model.generate(**kwargs)

    return replace(loaded, model=_Model())


def test_a_generation_config_stop_token_ends_the_article_as_eos(tiny_model: LoadedModel) -> None:
    config = DecodingConfig(do_sample=False, max_new_tokens=12)
    stop = _first_token(tiny_model, config, at=4)
    eos = tiny_model.tokenizer.eos_token_id
    stopping = _with_generation_eos(tiny_model, [eos, stop])
    g = generations(Engine(stopping), [GenerationRequest(0, PROMPTS[0], config, 1)])[0]
    assert g.finish_reason == "eos"
    assert g.token_ids[-1] == stop
    assert len(g.token_ids) <= 5
    assert stop not in g.token_ids[:-1]
    # The stop token is the article's end, not its text.
    body = tiny_model.tokenizer.decode(list(g.token_ids[:-1]), skip_special_tokens=True)
    assert g.text == body


def test_beam_search_stops_on_the_generation_config_tokens_too(tiny_model: LoadedModel) -> None:
    config = DecodingConfig(do_sample=False, num_beams=3, max_new_tokens=12)
    request = GenerationRequest(0, PROMPTS[0], config, 1)
    free = generations(Engine(tiny_model), [request])[0]
    assert free.finish_reason == "length"
    # Every token of the free article now ends a beam: it must end at its first stop token.
    stops = sorted(set(free.token_ids[:6]))
    eos = tiny_model.tokenizer.eos_token_id
    g = generations(Engine(_with_generation_eos(tiny_model, [eos, *stops])), [request])[0]
    assert g.token_ids != free.token_ids
    assert not set(g.token_ids[:-1]) & set(stops)
    assert g.finish_reason == ("eos" if g.token_ids[-1] in stops else "length")


def test_stop_token_ids_end_an_article_and_wait_for_min_new_tokens(tiny_model: LoadedModel) -> None:
    greedy = DecodingConfig(do_sample=False, max_new_tokens=12)
    stop = _first_token(tiny_model, greedy, at=3)
    stopped = greedy.model_copy(update={"stop_token_ids": (stop,)})
    later = stopped.model_copy(update={"min_new_tokens": 8})
    engine = Engine(tiny_model)
    g, held = generations(
        engine,
        [GenerationRequest(0, PROMPTS[0], stopped, 1), GenerationRequest(1, PROMPTS[0], later, 1)],
    )
    assert (g.finish_reason, len(g.token_ids), g.token_ids[-1]) == ("eos", 4, stop)
    assert stop not in held.token_ids[:8]  # suppressed until min_new_tokens, like end-of-text


def test_stop_token_ids_parse_from_text_and_outside_the_vocabulary_fail_alone(
    tiny_model: LoadedModel,
) -> None:
    assert DecodingConfig.model_validate({"stop_token_ids": "[5, 7]"}).stop_token_ids == (5, 7)
    assert DecodingConfig.model_validate({"stop_token_ids": "42"}).stop_token_ids == (42,)
    # JSON's true and 1.0 are not ids, though int() would take them as 1.
    cases = [("[5, true]", "true"), ([False], "false"), ("[1.0]", "1.0"), ("1.0", '"1.0"')]
    for value, shown in cases:
        with pytest.raises(ValidationError, match=f"token ids are whole numbers, got {shown}"):
            DecodingConfig.model_validate({"stop_token_ids": value})
    outside = DecodingConfig(max_new_tokens=4, stop_token_ids=(10**6,))
    fine = DecodingConfig(max_new_tokens=4)
    outcomes = Engine(tiny_model).generate(
        [GenerationRequest("bad", "x", outside, 1), GenerationRequest("ok", "x", fine, 1)]
    )
    assert isinstance(outcomes[0], GenerationFailure)
    assert "stop_token_ids [1000000] are not tokens of this model" in outcomes[0].reason
    assert isinstance(outcomes[1], Generation)


def _first_layer(model: Any) -> torch.nn.Module:
    decoder = model.get_decoder()
    layers = getattr(decoder, "layers", None) or getattr(decoder, "h", None)
    assert layers is not None
    return layers[0]  # type: ignore[no-any-return]


def _fed(loaded: LoadedModel, sigma: float) -> torch.Tensor:
    """What the first decoder layer receives for a prompt's prefill, at noise `sigma`."""
    seen: list[torch.Tensor] = []

    def capture(_: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        if not seen:
            seen.append(hidden.detach().clone())

    config = DecodingConfig(do_sample=False, max_new_tokens=1, noise_sigma=sigma)
    handle = _first_layer(loaded.model).register_forward_pre_hook(capture, with_kwargs=True)
    try:
        Engine(loaded).generate([GenerationRequest(0, " ".join(PROMPTS), config, seed=7)])
    finally:
        handle.remove()
    return seen[0][0]


@pytest.mark.parametrize("kind", ["gpt2", "llama", "gemma"])
def test_one_sigma_is_the_same_share_of_what_the_model_feeds_forward(
    kind: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    loaded = _build(kind, tiny_model_dir, tmp_path / kind)
    weights = loaded.model.get_input_embeddings().weight.detach()
    # The embeddings as the model feeds them on: Gemma multiplies by sqrt(hidden) (here 5.7).
    scale = weights.shape[1] ** 0.5 if kind == "gemma" else 1.0
    fed_rms = float(weights.pow(2).mean().sqrt()) * scale
    sigma = 0.2
    noise = _fed(loaded, sigma) - _fed(loaded, 0.0)
    ratio = float(noise.pow(2).mean().sqrt()) / fed_rms
    # ~1,500 noise values: their RMS is within a few percent of sigma.
    assert ratio == pytest.approx(sigma, rel=0.1)


def test_a_runs_batch_is_a_queue_for_the_engines_rows(
    sqlite_url: str, tiny_model_dir: Path, catalog: PresetCatalog, tmp_path: Path
) -> None:
    """With queue_depth 3, a batch of 2 rows holds 6 articles: rows whose article ends take
    the batch's waiting prompts, and every article is written once."""
    lengths = [4 + 5 * i for i in range(6)]
    with seeded_run(lengths, sqlite_url, tiny_model_dir, catalog, tmp_path, depth=3) as (
        settings,
        db,
    ):
        params = GenerateParams(batch_size=2, preset="greedy")
        job_id = open_job(settings, params)
        start_run(settings, job_id, params)
        batch = claim_batch(settings, job_id, params)
        assert len(batch) == 6
        report = write_batch(settings, job_id, batch, params)
        finish_run(settings, job_id, params)
        assert len(report.written) == 6
        with db.session(write=False) as session:
            articles = list(session.scalars(select(Article)))
        assert sorted(a.tokens_generated for a in articles) == [4, 9, 14, 19, 24, 29]
        assert {a.timings["batch_size"] for a in articles} == {2}  # two rows, six articles
