"""The generation engine on tiny random models: decoding properties, seeds, noise, failures."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from typing import Any

import pytest
import torch

from articlegen.generator import DecodingConfig, PresetCatalog
from articlegen.generator.decode_loop import chunks as _chunks
from articlegen.generator.engine import Engine
from articlegen.generator.loading import LoadedModel
from articlegen.generator.requests import Generation, GenerationFailure, GenerationRequest
from articlegen.generator.sampling import RowSettings, warp

MICRO_PROMPTS = ["alpha beta", "gamma", "delta eps zeta eta", "theta iota kappa", "mu nu xi omi mu"]
TINY_PROMPTS = [
    "Night trains are",
    "A sourdough starter is a small ecosystem of wild yeast and bacteria. When the kitchen",
    "Heat",
    "Choosing a database for a small product is less exciting than it sounds. The safest choice "
    "is usually the one your team already knows, running on a managed service, with",
    "Teenagers need more sleep than",
    "A good podcast respects the listener's time. It has a clear idea of",
    "x",
    "Repair cafes are community events where volunteers",
]


def _config(**values: Any) -> DecodingConfig:
    return DecodingConfig.model_validate(values)


def _run(
    loaded: LoadedModel,
    prompts: list[str],
    config: DecodingConfig,
    seeds: list[int] | None = None,
    batch_size: int = 8,
    keep_step_logits: bool = False,
) -> list[Generation]:
    engine = Engine(loaded, batch_size=batch_size, keep_step_logits=keep_step_logits)
    seeds = seeds or list(range(len(prompts)))
    requests = [
        GenerationRequest(i, p, config, s)
        for i, (p, s) in enumerate(zip(prompts, seeds, strict=True))
    ]
    outcomes = engine.generate(requests)
    assert all(isinstance(o, Generation) for o in outcomes)
    return [o for o in outcomes if isinstance(o, Generation)]


# --- decoding properties ------------------------------------------------------------------------


def test_greedy_picks_the_argmax_at_every_step(micro_model: LoadedModel) -> None:
    config = _config(do_sample=False, max_new_tokens=10)
    for generation in _run(micro_model, MICRO_PROMPTS, config, keep_step_logits=True):
        assert len(generation.step_logits) == generation.tokens_generated > 0
        for token, logits in zip(generation.token_ids, generation.step_logits, strict=True):
            assert token == int(logits.argmax())


def _sampled_steps(
    loaded: LoadedModel, config: DecodingConfig, runs: int = 40
) -> list[tuple[int, torch.Tensor]]:
    prompts = [MICRO_PROMPTS[i % len(MICRO_PROMPTS)] for i in range(runs)]
    steps = []
    for g in _run(loaded, prompts, config, seeds=list(range(runs)), keep_step_logits=True):
        steps += list(zip(g.token_ids, g.step_logits, strict=True))
    return steps


def test_top_k_never_leaves_the_k_most_likely(micro_model: LoadedModel) -> None:
    steps = _sampled_steps(micro_model, _config(top_k=3, max_new_tokens=8))
    chosen_ranks = set()
    for token, logits in steps:
        kth = torch.topk(logits, 3).values[-1]
        assert logits[token] >= kth
        chosen_ranks.add(int((logits > logits[token]).sum()))
    assert chosen_ranks == {0, 1, 2}  # it samples, rather than always taking the top token


def test_nucleus_never_leaves_the_smallest_set_with_mass_p(micro_model: LoadedModel) -> None:
    p = 0.6
    steps = _sampled_steps(micro_model, _config(top_p=p, temperature=1.0, max_new_tokens=8))
    sizes = set()
    for token, logits in steps:
        probs = logits.softmax(-1)
        ordered = probs.sort(descending=True).values
        size = int((ordered.cumsum(-1) < p).sum()) + 1  # smallest prefix reaching p
        assert probs[token] >= ordered[size - 1]
        sizes.add(size)
    assert max(sizes) > 1  # the property was tested on non-trivial nuclei


@pytest.mark.parametrize("temperatures", [[0.5, 1.0, 2.0, 0.05]])
def test_temperature_scales_logits_exactly(temperatures: list[float]) -> None:
    logits = torch.randn(len(temperatures), 50, generator=torch.Generator().manual_seed(0))
    settings = RowSettings.stack(
        [_config(temperature=t) for t in temperatures], torch.device("cpu")
    )
    expected = torch.softmax(logits / torch.tensor(temperatures)[:, None], dim=-1)
    torch.testing.assert_close(warp(logits, settings).softmax(-1), expected, rtol=0, atol=1e-7)


def test_beam_as_wide_as_the_vocabulary_is_exhaustive(micro_model: LoadedModel) -> None:
    vocab = micro_model.model.config.vocab_size
    eos = micro_model.tokenizer.eos_token_id
    config = _config(do_sample=False, num_beams=vocab, max_new_tokens=2, min_new_tokens=2)
    for prompt in MICRO_PROMPTS:
        (generation,) = _run(micro_model, [prompt], config)
        ids = micro_model.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        best, best_score = None, float("-inf")
        with torch.inference_mode():
            first = micro_model.model(torch.tensor([ids])).logits[0, -1].log_softmax(-1)
            for t1, t2 in itertools.product(range(vocab), repeat=2):
                if eos in (t1, t2):  # min_new_tokens = 2 forbids ending early
                    continue
                second = micro_model.model(torch.tensor([[*ids, t1]])).logits[0, -1]
                score = float(first[t1] + second.log_softmax(-1)[t2])
                if score > best_score:
                    best, best_score = (t1, t2), score
        assert generation.token_ids == best
        assert sum(generation.token_logprobs) == pytest.approx(best_score, abs=1e-4)


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"repetition_penalty": 1.3},
        {"no_repeat_ngram_size": 2},
        {"min_new_tokens": 5, "repetition_penalty": 0.8},
    ],
)
def test_our_greedy_loop_matches_transformers_generate(
    tiny_model: LoadedModel, settings: dict[str, Any]
) -> None:
    """The mapped GenerationConfig and our own loop are two paths to one greedy output."""
    config = _config(do_sample=False, max_new_tokens=16, **settings)
    tokenizer = tiny_model.tokenizer
    for g in _run(tiny_model, TINY_PROMPTS[:4], config):
        assert isinstance(g.key, int)
        ids = torch.tensor([tokenizer(TINY_PROMPTS[g.key], add_special_tokens=False)["input_ids"]])
        generation_config = config.to_generation_config(
            tokenizer.eos_token_id, tokenizer.eos_token_id
        )
        with torch.inference_mode():
            reference = tiny_model.model.generate(
                ids, attention_mask=torch.ones_like(ids), generation_config=generation_config
            )
        assert g.token_ids == tuple(reference[0, ids.shape[1] :].tolist())


def test_generation_config_mapping() -> None:
    sampled = _config(temperature=0.7, top_k=40, top_p=0.9, max_new_tokens=99).to_generation_config(
        0, 0
    )
    assert (sampled.do_sample, sampled.temperature, sampled.top_k, sampled.top_p) == (
        True, 0.7, 40, 0.9
    )  # fmt: skip
    assert sampled.max_new_tokens == 99
    beam = _config(do_sample=False, num_beams=4, no_repeat_ngram_size=3).to_generation_config(0, 0)
    assert (beam.num_beams, beam.no_repeat_ngram_size, beam.do_sample) == (4, 3, False)


# --- seeds and batches ---------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["nucleus", "top_k", "creative", "greedy", "beam"])
def test_an_article_does_not_depend_on_its_batch(
    tiny_model: LoadedModel, catalog: PresetCatalog, preset: str
) -> None:
    config = catalog.resolve(preset, {"max_new_tokens": 24})
    seeds = [101 + i for i in range(len(TINY_PROMPTS))]
    batched = _run(tiny_model, TINY_PROMPTS, config, seeds, batch_size=8)
    assert {g.batch_size for g in batched} == {8}
    for i, prompt in enumerate(TINY_PROMPTS):
        (alone,) = _run(tiny_model, [prompt], config, [seeds[i]], batch_size=1)
        assert alone.token_ids == batched[i].token_ids
        assert alone.text == batched[i].text
    # And in another order, mixed with other prompts.
    order = list(range(len(TINY_PROMPTS)))
    random.Random(3).shuffle(order)
    shuffled = _run(tiny_model, [TINY_PROMPTS[i] for i in order], config, [seeds[i] for i in order])
    for position, i in enumerate(order):
        assert shuffled[position].token_ids == batched[i].token_ids


def test_seeds_reproduce_and_differ(tiny_model: LoadedModel, catalog: PresetCatalog) -> None:
    config = catalog.resolve("nucleus", {"max_new_tokens": 20})
    prompt = TINY_PROMPTS[0]
    a, b, c = _run(tiny_model, [prompt] * 3, config, seeds=[7, 7, 8])
    assert a.token_ids == b.token_ids
    assert a.token_ids != c.token_ids


def test_rows_with_different_settings_share_a_batch(
    tiny_model: LoadedModel, catalog: PresetCatalog
) -> None:
    configs = [
        catalog.resolve(name, {"max_new_tokens": n})
        for name, n in [("greedy", 12), ("nucleus", 20), ("precise", 8), ("top_k", 16)]
    ]
    engine = Engine(tiny_model, batch_size=4)
    requests = [GenerationRequest(i, TINY_PROMPTS[i], c, 50 + i) for i, c in enumerate(configs)]
    together = engine.generate(requests)
    for request, outcome in zip(requests, together, strict=True):
        assert isinstance(outcome, Generation)
        assert outcome.batch_size == 4
        assert outcome.tokens_generated <= request.config.max_new_tokens
        (alone,) = Engine(tiny_model, batch_size=1).generate([request])
        assert isinstance(alone, Generation)
        assert alone.token_ids == outcome.token_ids


# --- embedding noise ---------------------------------------------------------------------------


def test_zero_noise_is_exactly_plain_decoding(tiny_model: LoadedModel) -> None:
    plain = _config(do_sample=False, max_new_tokens=16)
    zero = _config(do_sample=False, max_new_tokens=16, noise_sigma=0.0)
    noisy = _config(do_sample=False, max_new_tokens=16, noise_sigma=2.0)
    engine = Engine(tiny_model, batch_size=4)
    prompt = TINY_PROMPTS[1]
    outcomes = engine.generate(
        [
            GenerationRequest("plain", prompt, plain, 1),
            GenerationRequest("zero", prompt, zero, 2),
            GenerationRequest("noisy", prompt, noisy, 3),  # shares the batch with the others
        ]
    )
    assert isinstance(outcomes[0], Generation)
    assert isinstance(outcomes[1], Generation)
    assert outcomes[0].token_ids == outcomes[1].token_ids
    # Same inputs; rows of one batch may round differently in the last bit of a float.
    assert outcomes[0].token_logprobs == pytest.approx(outcomes[1].token_logprobs, abs=1e-5)


@pytest.mark.parametrize(
    "noise", [{"noise_sigma": 2.0}, {"noise_sigma": 1.0, "noise_every_step": True}]
)
def test_noise_varies_greedy_output_and_reproduces_from_the_seed(
    tiny_model: LoadedModel, noise: dict[str, Any]
) -> None:
    prompt = TINY_PROMPTS[1]
    (plain,) = _run(tiny_model, [prompt], _config(do_sample=False, max_new_tokens=16))
    config = _config(do_sample=False, max_new_tokens=16, **noise)
    seeds = list(range(6))
    noisy = _run(tiny_model, [prompt] * 6, config, seeds)
    assert len({g.token_ids for g in noisy}) >= 3  # different articles from one prompt
    assert any(g.token_ids != plain.token_ids for g in noisy)
    again = _run(tiny_model, [prompt] * 6, config, seeds, batch_size=2)
    assert [g.token_ids for g in again] == [g.token_ids for g in noisy]


def test_noise_applies_to_beam_search_prompts(tiny_model: LoadedModel) -> None:
    beam = _config(do_sample=False, num_beams=3, max_new_tokens=12, noise_sigma=4.0)
    outputs = _run(tiny_model, [TINY_PROMPTS[4]] * 5, beam, seeds=list(range(5)))
    assert len({g.token_ids for g in outputs}) >= 2
    (again,) = _run(tiny_model, [TINY_PROMPTS[4]], beam, seeds=[0])
    assert again.token_ids == outputs[0].token_ids


# --- measurements and finish reasons -------------------------------------------------------------


@pytest.mark.parametrize("preset", ["nucleus", "beam"])
def test_token_logprobs_match_a_teacher_forced_pass(
    tiny_model: LoadedModel, catalog: PresetCatalog, preset: str
) -> None:
    config = catalog.resolve(preset, {"max_new_tokens": 12})
    for g in _run(tiny_model, TINY_PROMPTS[:3], config):
        assert isinstance(g.key, int)
        prompt_ids = tiny_model.tokenizer(TINY_PROMPTS[g.key], add_special_tokens=False)[
            "input_ids"
        ]
        ids = torch.tensor([[*prompt_ids, *g.token_ids]])
        with torch.inference_mode():
            log_probs = tiny_model.model(ids).logits[0].log_softmax(-1)
        expected = [float(log_probs[len(prompt_ids) - 1 + i, t]) for i, t in enumerate(g.token_ids)]
        assert g.token_logprobs == pytest.approx(expected, abs=1e-4)
        assert g.prompt_tokens == len(prompt_ids)
        assert g.finish_reason == "length"
        assert g.tokens_generated == 12
        assert g.seconds > 0


@pytest.fixture
def eos_model(tiny_model_dir: Any) -> LoadedModel:
    """The tiny model, altered so that end-of-text is always the most likely next token."""
    from articlegen.generator.loading import ModelSpec, _load_uncached

    loaded = _load_uncached(ModelSpec(str(tiny_model_dir), device="cpu", dtype="float32"))
    eos = loaded.tokenizer.eos_token_id
    with torch.no_grad():
        embeddings = loaded.model.get_input_embeddings().weight
        embeddings[eos] *= 3
        ln_f = loaded.model.transformer.ln_f
        ln_f.weight.zero_()
        ln_f.bias.copy_(embeddings[eos] * 10)
    return loaded


def test_finish_reason_eos_and_min_new_tokens(eos_model: LoadedModel) -> None:
    (ended,) = _run(eos_model, ["Night trains"], _config(do_sample=False, max_new_tokens=10))
    assert (ended.finish_reason, ended.tokens_generated, ended.text) == ("eos", 1, "")
    config = _config(do_sample=False, max_new_tokens=10, min_new_tokens=3)
    (held,) = _run(eos_model, ["Night trains"], config)
    assert held.finish_reason == "eos"
    assert held.tokens_generated == 4
    assert held.token_ids[-1] == eos_model.tokenizer.eos_token_id


def test_finish_reason_stop_string(tiny_model: LoadedModel) -> None:
    (free,) = _run(tiny_model, [TINY_PROMPTS[0]], _config(do_sample=False, max_new_tokens=24))
    words = free.text.split()
    stop = words[len(words) // 2]
    config = _config(do_sample=False, max_new_tokens=24, stop_strings=[stop])
    (stopped,) = _run(tiny_model, [TINY_PROMPTS[0]], config)
    assert stopped.finish_reason == "stop_string"
    assert stop not in stopped.text
    assert free.text.startswith(stopped.text)
    assert stopped.tokens_generated < free.tokens_generated


def test_a_prompt_too_long_for_the_context_fails_alone(tiny_model: LoadedModel) -> None:
    long_prompt = "The night train leaves at ten. " * 200
    engine = Engine(tiny_model, batch_size=4)
    config = _config(max_new_tokens=16)
    outcomes = engine.generate(
        [
            GenerationRequest("a", TINY_PROMPTS[0], config, 1),
            GenerationRequest("long", long_prompt, config, 2),
            GenerationRequest("b", TINY_PROMPTS[2], config, 3),
        ]
    )
    assert isinstance(outcomes[0], Generation)
    assert isinstance(outcomes[2], Generation)
    failure = outcomes[1]
    assert isinstance(failure, GenerationFailure)
    assert failure.key == "long"
    assert failure.reason.startswith("the prompt is ")
    assert failure.reason.endswith(
        "over the model's context of 512 tokens: shorten the prompt or lower max_new_tokens"
    )
    # A chat-form prompt (no special tokens added: the template wrote them) may be long for
    # its system message: the message says so rather than blame the topic.
    chat = GenerationRequest("chat", long_prompt, config, 4, add_special_tokens=False)
    (chat_failure,) = engine.generate([chat])
    assert isinstance(chat_failure, GenerationFailure)
    assert chat_failure.reason.startswith(
        "the prompt in chat form (with the template's markup and any system message) is "
    )
    assert chat_failure.reason.endswith(
        "shorten the prompt or its system message, or lower max_new_tokens"
    )


class _MemoryLimitedModel(torch.nn.Module):
    """The hardware edge, faked: a real model that runs out of memory above `limit` rows."""

    def __init__(self, inner: torch.nn.Module, limit: int) -> None:
        super().__init__()
        self.inner = inner
        self.limit = limit
        self.config = inner.config

    def get_input_embeddings(self) -> Any:
        return self.inner.get_input_embeddings()  # type: ignore[operator]

    def forward(self, **kwargs: Any) -> Any:
        if kwargs["inputs_embeds"].shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.inner(**kwargs)


def test_out_of_memory_splits_the_batch(tiny_model: LoadedModel) -> None:
    limited = replace(tiny_model, model=_MemoryLimitedModel(tiny_model.model, limit=2))
    config = _config(max_new_tokens=10)
    seeds = list(range(8))
    split = _run(limited, TINY_PROMPTS, config, seeds, batch_size=8)
    assert {g.batch_size for g in split} == {2}
    whole = _run(tiny_model, TINY_PROMPTS, config, seeds, batch_size=8)
    assert [g.token_ids for g in split] == [g.token_ids for g in whole]


def test_padded_vocabulary_rows_are_never_generated(tiny_model_dir: Any) -> None:
    """Models often have more embedding rows than tokens; those ids decode to nothing."""
    from articlegen.generator.loading import ModelSpec, _load_uncached

    loaded = _load_uncached(ModelSpec(str(tiny_model_dir), device="cpu", dtype="float32"))
    vocab = len(loaded.tokenizer)
    loaded.model.resize_token_embeddings(vocab + 64)
    with torch.no_grad():  # point every hidden state at a padded row: it is now the argmax
        embeddings = loaded.model.get_input_embeddings().weight
        embeddings[vocab + 5] = embeddings[:vocab].abs().max() * 5
        loaded.model.transformer.ln_f.weight.zero_()
        loaded.model.transformer.ln_f.bias.copy_(embeddings[vocab + 5])
        assert int(loaded.model(torch.tensor([[1, 2]])).logits[0, -1].argmax()) == vocab + 5
    for preset in ("greedy", "nucleus", "beam"):
        config = _config(
            do_sample=preset == "nucleus", max_new_tokens=8, num_beams=3 if preset == "beam" else 1
        )
        for g in _run(loaded, TINY_PROMPTS[:2], config):
            assert max(g.token_ids) < vocab


def test_long_and_short_rows_share_a_batch_within_the_context(tiny_model: LoadedModel) -> None:
    """A finished row must not walk its positions past the context while others go on."""
    tokenizer = tiny_model.tokenizer
    ids = tokenizer("Night trains are coming back to Europe. " * 80)["input_ids"][:500]
    long_prompt = str(tokenizer.decode(ids))
    room = tiny_model.context_length - len(tokenizer(long_prompt)["input_ids"])
    assert 1 <= room <= 20  # a prompt that nearly fills the 512-token context
    requests = [
        GenerationRequest("long", long_prompt, _config(do_sample=False, max_new_tokens=room), 1),
        GenerationRequest("short", "Hi", _config(do_sample=False, max_new_tokens=500), 2),
    ]
    together = Engine(tiny_model, batch_size=2).generate(requests)
    for request, outcome in zip(requests, together, strict=True):
        assert isinstance(outcome, Generation), outcome
        (alone,) = Engine(tiny_model, batch_size=1).generate([request])
        assert isinstance(alone, Generation)
        assert outcome.token_ids == alone.token_ids
    assert isinstance(together[1], Generation)
    assert together[1].tokens_generated == 500


def test_stop_string_on_the_last_allowed_token_is_a_stop(tiny_model: LoadedModel) -> None:
    found = 0
    for prompt, seed in itertools.product(TINY_PROMPTS, range(3)):
        (free,) = _run(tiny_model, [prompt], _config(max_new_tokens=12), seeds=[seed])
        last = str(tiny_model.tokenizer.decode(list(free.token_ids[-1:]))).strip()
        if len(last) < 2 or free.text.find(last) != len(free.text.rstrip()) - len(last):
            continue  # the last token's text must first appear at the very end
        config = _config(max_new_tokens=12, stop_strings=[last])
        (stopped,) = _run(tiny_model, [prompt], config, seeds=[seed])
        assert (stopped.finish_reason, stopped.tokens_generated) == ("stop_string", 12)
        assert last not in stopped.text
        found += 1
    assert found > 0


def test_beam_search_stopped_by_a_stop_string(tiny_model: LoadedModel) -> None:
    # A strongly negative length penalty favours short beams, so the beam that stops on the
    # stop string wins (otherwise a longer beam may outscore it, and the output never stops).
    beam = {
        "do_sample": False,
        "num_beams": 3,
        "max_new_tokens": 16,
        "length_penalty": -5.0,
        "early_stopping": True,
    }
    (free,) = _run(tiny_model, [TINY_PROMPTS[0]], _config(**beam))
    words = free.text.split()
    stop = next(w for w in words if w != words[0])  # first appears after the start
    # A batch-mate that runs longer makes generate pad the stopped row (with end-of-text).
    stopped, mate = _run(
        tiny_model, [TINY_PROMPTS[0], TINY_PROMPTS[4]], _config(**beam, stop_strings=[stop])
    )
    assert mate.tokens_generated > stopped.tokens_generated
    assert stopped.finish_reason == "stop_string"
    assert stop not in stopped.text
    assert stopped.tokens_generated < 16  # the padding after the stop is not output
    assert len(stopped.token_logprobs) == stopped.tokens_generated
    assert free.text.startswith(stopped.text)


@pytest.mark.parametrize("preset", ["greedy", "nucleus", "noisy_greedy"])
def test_prompts_of_very_mixed_length_prefill_in_chunks_unchanged(
    tiny_model: LoadedModel, catalog: PresetCatalog, preset: str
) -> None:
    # 24 prompts from 1 to ~300 tokens in one batch: the prompt pass runs in several chunks of
    # similar length, whose keys and values are merged into one cache. Each article must be
    # what it is alone (no padding at all), and its log-probabilities too.
    words = " ".join(TINY_PROMPTS).split()
    prompts = [" ".join(words[: 1 + (n * n) % 90] * 3) for n in range(24)]
    engine = Engine(tiny_model, batch_size=24)
    lengths = sorted(len(engine.encode(p)) for p in prompts)
    assert len(_chunks(lengths)) >= 3, lengths  # the case under test: several chunks
    config = catalog.resolve(preset, {"max_new_tokens": 16})
    seeds = [500 + i for i in range(len(prompts))]
    batched = _run(tiny_model, prompts, config, seeds, batch_size=24)
    assert {g.batch_size for g in batched} == {24}
    for i in range(0, len(prompts), 3):
        (alone,) = _run(tiny_model, [prompts[i]], config, [seeds[i]], batch_size=1)
        assert alone.token_ids == batched[i].token_ids
        assert alone.token_logprobs == pytest.approx(batched[i].token_logprobs, abs=1e-4)


def test_chunks_bound_the_padding_and_the_tokens() -> None:
    assert _chunks([5] * 20) == [(0, 20)]  # equal lengths: one chunk
    assert _chunks([1, 2, 3]) == [(0, 3)]  # few rows: never cut
    lengths = [10] * 9 + [100] * 9
    assert _chunks(lengths) == [(0, 9), (9, 18)]
    # 20 rows of 300 tokens are 6,000 tokens: cut where a chunk would pass 4,096.
    assert _chunks([300] * 20) == [(0, 13), (13, 20)]
    assert _chunks([5000, 5000]) == [(0, 1), (1, 2)]  # one row over the cap still runs
    lengths = sorted(random.Random(1).choices(range(1, 400), k=100))
    chunks = _chunks(lengths)
    assert [r for start, stop in chunks for r in range(start, stop)] == list(range(100))
    for start, stop in chunks:
        assert stop - start == 1 or (stop - start) * lengths[stop - 1] <= 4096
    assert _chunks([]) == []


def test_a_cache_budget_cuts_batches_without_changing_articles(
    tiny_model: LoadedModel, catalog: PresetCatalog
) -> None:
    # The budget bounds rows x (longest prompt + new tokens) per batch; long prompts then run
    # in smaller batches. Articles stay what they are in one big batch.
    config = catalog.resolve("nucleus", {"max_new_tokens": 12})
    prompts = TINY_PROMPTS * 2
    seeds = list(range(len(prompts)))
    requests = [
        GenerationRequest(i, p, config, s)
        for i, (p, s) in enumerate(zip(prompts, seeds, strict=True))
    ]
    budget = 120
    engine = Engine(tiny_model, batch_size=16, cache_tokens=budget)
    budgeted = engine.generate(requests)
    whole = Engine(tiny_model, batch_size=16).generate(requests)
    lengths = [len(engine.encode(p)) for p in prompts]
    sizes = set()
    for outcome, reference, length in zip(budgeted, whole, lengths, strict=True):
        assert isinstance(outcome, Generation)
        assert isinstance(reference, Generation)
        assert outcome.token_ids == reference.token_ids
        assert reference.batch_size == 16
        sizes.add(outcome.batch_size)
        # A row's batch was no wider than its own length allows within the budget, unless
        # the row ran alone.
        assert outcome.batch_size == 1 or outcome.batch_size * (length + 12) <= budget
    assert len(sizes) > 1  # short prompts ran in larger batches than long ones
    with pytest.raises(ValueError, match="cache_tokens"):
        Engine(tiny_model, cache_tokens=0)
