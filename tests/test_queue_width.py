"""A queue whose later prompts are longer: the rows widen without the queue draining first.

The engine's queue is sorted by prompt length and its cache is as wide as the rows need. When a
longer prompt comes, the rows still running move into wider rows, fewer of them within the cache
budget, as soon as they fit: the long prompts start while the short articles still run, rather
than after the last of them (which gave each width a tail of its own, `bench/README.md`).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from articlegen.generator.decoding import DecodingConfig
from articlegen.generator.engine import Engine
from articlegen.generator.kv_cache import InPlaceCache
from articlegen.generator.loading import LoadedModel
from articlegen.generator.requests import DecodeStep, GenerationRequest
from articlegen.generator.widths import padded
from tests.queue_support import OutOfMemoryAbove, generations


def _request(key: int, words: int, new_tokens: int, **settings: object) -> GenerationRequest:
    config = DecodingConfig.model_validate(
        {"min_new_tokens": new_tokens, "max_new_tokens": new_tokens, **settings}
    )
    return GenerationRequest(key, " ".join(["the"] * words), config, seed=key)


def test_longer_prompts_join_while_the_short_articles_still_run(tiny_model: LoadedModel) -> None:
    # Four short prompts (BOS and a word, + 3 or 10 new: 12 positions at most), then two long
    # ones (41 + 4 = 45). A budget of 100 positions holds four short rows but two long ones.
    requests = [
        _request(0, 1, 3),
        _request(1, 1, 3, do_sample=False),
        _request(2, 1, 3, top_p=0.9, noise_sigma=0.4),
        _request(3, 1, 10, top_k=20),
        _request(4, 40, 4),
        _request(5, 40, 4, do_sample=False, noise_sigma=0.2, noise_every_step=True),
    ]
    engine = Engine(tiny_model, batch_size=4, cache_tokens=100)
    assert [len(engine.encode(r.prompt)) for r in requests] == [2, 2, 2, 2, 41, 41]
    steps: list[DecodeStep] = []
    queued = generations(engine, requests, on_step=steps.append)
    # Steps 1-3: four rows. Three end; the one left fits two rows of 45, so the rows widen at
    # once and the first long prompt joins it (steps 4-7), then the second (steps 8-10); the
    # short article ends at step 10 and the long one alone makes its last token. Drained
    # first, the long prompts would have waited for step 10: [4, 4, 4, 1 x 7, 2, 2, 2, 2].
    assert [s.tokens for s in steps] == [4, 4, 4, 2, 2, 2, 2, 2, 2, 2, 1]
    assert [s.finished for s in steps] == [0, 0, 3, 0, 0, 0, 1, 0, 0, 1, 1]
    alone = [generations(Engine(tiny_model, batch_size=1), [r])[0] for r in requests]
    assert [g.token_ids for g in queued] == [g.token_ids for g in alone]
    assert [len(g.token_ids) for g in queued] == [3, 3, 3, 10, 4, 4]


def test_rows_hold_each_prompt_with_its_own_budget(tiny_model: LoadedModel) -> None:
    # A short prompt with a long article (2 + 40 = 42 positions) and a long prompt with a short
    # one (41 + 2 = 43): rows of 43 hold either, and a budget of 90 positions two of them. Rows
    # as wide as the longest prompt plus the largest budget (81) would fit one at a time. Both
    # start at once, and the first must not be padded to the second's 41 tokens in their prompt
    # pass: its 40 new tokens would not fit beside that padding.
    requests = [_request(0, 1, 40), _request(1, 40, 2, do_sample=False)]
    engine = Engine(tiny_model, batch_size=4, cache_tokens=90)
    steps: list[DecodeStep] = []
    queued = generations(engine, requests, on_step=steps.append)
    assert [s.tokens for s in steps][:3] == [2, 2, 1]
    assert sum(s.tokens for s in steps) == 42
    alone = [generations(Engine(tiny_model, batch_size=1), [r])[0] for r in requests]
    assert [g.token_ids for g in queued] == [g.token_ids for g in alone]


def test_a_prompt_pass_never_pads_a_prompt_past_its_rows_room() -> None:
    # Sorted by length: 2 and 3 tokens, each with 40 new, then 41 with 2, in rows 43 wide. The
    # first two share a pass (padded to 3: 43 positions); beside the third they would need 81.
    assert padded([(0, 3)], [2, 3, 41], [40, 40, 2], width=43) == [(0, 2), (2, 3)]
    assert padded([(0, 1), (1, 3)], [2, 3, 41], [40, 40, 2], 43) == [(0, 1), (1, 2), (2, 3)]
    assert padded([(0, 3)], [2, 3, 41], [2, 2, 2], 43) == [(0, 3)]


def test_every_width_and_row_count_writes_the_same_articles(tiny_model: LoadedModel) -> None:
    # Prompt lengths climbing from 1 to 60 tokens, articles of 2 to 20 tokens in no order:
    # with budgets from tight to none, rows widen, shrink, refill and compact differently.
    requests = [_request(i, 1 + (i * 13) % 60, 2 + (i * 7) % 19, top_p=0.95) for i in range(16)]
    # And prompts that grow as their articles shrink: rows as wide as one prompt's own reach
    # fit the others only where no prompt pass pads a short prompt's long article past them.
    requests += [_request(16 + i, 1 + 6 * i, 40 - 5 * i, top_p=0.95) for i in range(8)]
    alone = [generations(Engine(tiny_model, batch_size=1), [r])[0] for r in requests]
    for budget in (80, 200, 500, None):
        queued = generations(Engine(tiny_model, batch_size=5, cache_tokens=budget), requests)
        assert [g.token_ids for g in queued] == [g.token_ids for g in alone], budget


def test_out_of_memory_halves_the_rows_the_budget_allowed(tiny_model: LoadedModel) -> None:
    # 64 rows asked for, the budget allows 4 (8 positions each), the hardware 2. Halving the
    # rows alone (64 -> 32 -> ...) would leave the budget's 4 in use and fail again.
    limited = OutOfMemoryAbove(tiny_model.model, limit=2)
    requests = [_request(i, 1, 6) for i in range(6)]
    engine = Engine(replace(tiny_model, model=limited), batch_size=64, cache_tokens=32)
    out = generations(engine, requests)
    assert limited.failures == 1
    assert {g.batch_size for g in out} == {2}
    alone = [generations(Engine(tiny_model, batch_size=1), [r])[0] for r in requests]
    assert [g.token_ids for g in out] == [g.token_ids for g in alone]


def test_resizing_keeps_the_rows_asked_for_and_zeroes_the_rest() -> None:
    cache = InPlaceCache.allocate(layers=1, batch=3, capacity=4)
    keys = torch.arange(3 * 2 * 4 * 1, dtype=torch.float32).reshape(3, 2, 4, 1)
    cache.rows(slice(None), offset=0).update(keys, keys + 100, 0)
    cache.resize(torch.tensor([2, 0]), batch=3, capacity=6)
    stored = cache._storages[0]
    assert stored.keys is not None
    assert stored.values is not None
    assert stored.keys.shape == (3, 2, 6, 1)
    assert torch.equal(stored.keys[0, :, :4], keys[2])
    assert torch.equal(stored.keys[1, :, :4], keys[0])
    assert torch.equal(stored.values[1, :, :4], keys[0] + 100)
    assert not stored.keys[2].any()
    assert not stored.keys[:, :, 4:].any()


def test_a_refill_prompt_pass_attends_to_what_it_wrote_and_keeps_no_copy() -> None:
    """Rows picked by index (a queue's refill) are written in place, and attention gets the
    keys and values just written: no copy gathered back out of the rows and held by every
    layer until the pass ends (for a large chunk, hundreds of MiB)."""
    cache = InPlaceCache.allocate(layers=1, batch=4, capacity=5)
    keys = torch.arange(2 * 1 * 3 * 1, dtype=torch.float32).reshape(2, 1, 3, 1)
    refill = cache.rows(torch.tensor([3, 1]), offset=0)
    attended = refill.update(keys, keys + 100, 0)
    assert attended[0] is keys
    assert torch.equal(attended[1], keys + 100)
    assert refill._layers[0].keys is None  # nothing held past the layer's attention
    stored = cache._storages[0]
    assert stored.keys is not None
    assert torch.equal(stored.keys[3, :, :3], keys[0])
    assert torch.equal(stored.keys[1, :, :3], keys[1])
    assert not stored.keys[0].any()
    # A second write through the same rows attends to both, read back out of the rows.
    more = torch.full((2, 1, 1, 1), -1.0)
    again = refill.update(more, more, 0)
    assert torch.equal(again[0], torch.cat([keys, more], dim=2))


def test_rows_narrow_again_when_the_next_calls_short_prompts_come(
    tiny_model: LoadedModel,
) -> None:
    """Two long prompts fill two rows of 49 positions under a budget of 100; the next call's
    short prompts (`ahead`, 8 positions each) then run four at a time, not two: once no long
    row is left, the rows narrow and grow in number."""
    long = [_request(0, 40, 4), _request(1, 40, 8, do_sample=False)]
    short = [_request(2 + i, 1, 6, top_p=0.9) for i in range(4)]
    engine = Engine(tiny_model, batch_size=4, cache_tokens=100)
    first: list[DecodeStep] = []
    second: list[DecodeStep] = []
    out = generations(engine, long, on_step=first.append, ahead=short)
    out += generations(engine, short, on_step=second.append)
    # The long rows: two tokens a step; once the first ends, a short article takes its row
    # (the other long one still needs 49 positions: no narrowing yet).
    assert max(s.tokens for s in first) == 2
    assert sum(s.tokens for s in first) > 4 + 8  # a short article started in the first call
    assert max(s.tokens for s in second) == 4  # then four rows of 8 within the budget
    alone = [generations(Engine(tiny_model, batch_size=1), [r])[0] for r in long + short]
    assert [g.token_ids for g in out] == [g.token_ids for g in alone]


def test_narrowing_keeps_each_rows_first_positions() -> None:
    cache = InPlaceCache.allocate(layers=1, batch=2, capacity=6)
    keys = torch.arange(2 * 1 * 6 * 1, dtype=torch.float32).reshape(2, 1, 6, 1)
    cache.rows(slice(None), offset=0).update(keys, keys + 100, 0)
    cache.resize(torch.tensor([1]), batch=3, capacity=4)
    stored = cache._storages[0]
    assert stored.keys is not None
    assert stored.values is not None
    assert stored.keys.shape == (3, 1, 4, 1)
    assert torch.equal(stored.keys[0], keys[1, :, :4])
    assert torch.equal(stored.values[0], keys[1, :, :4] + 100)
    assert not stored.keys[1:].any()
