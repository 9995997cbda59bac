"""A stop (`jobs cancel`) in the engine: it is asked after every decoding step, and the
generation ends there. What ended is kept, the same as without the stop; the rest comes back as
stopped failures, for the run to give back."""

from __future__ import annotations

import pytest

from articlegen.generator.engine import Engine
from articlegen.generator.loading import LoadedModel
from articlegen.generator.requests import DecodeStep, Generation, GenerationFailure
from tests.queue_support import PROMPTS, generations, mixed_requests


@pytest.mark.parametrize("continuous", [True, False])
def test_a_stop_keeps_the_articles_that_ended_and_hands_back_the_rest(
    tiny_model: LoadedModel, continuous: bool
) -> None:
    """`stop` (a cancel) asked after every step: the articles that ended before it are the
    same as alone, the others, running or waiting, come back as stopped failures."""
    requests = mixed_requests(PROMPTS)  # 3 to 25 tokens each
    engine = Engine(tiny_model, batch_size=3, continuous=continuous)
    complete = generations(engine, requests)
    steps: list[DecodeStep] = []
    outcomes = engine.generate(requests, on_step=steps.append, stop=lambda: len(steps) >= 12)
    ended = [o for o in outcomes if isinstance(o, Generation)]
    stopped = [o for o in outcomes if isinstance(o, GenerationFailure)]
    assert ended, "some article ends within 12 steps"
    assert stopped, "and some do not"
    assert all(f.stopped for f in stopped)
    assert len(ended) + len(stopped) == len(requests)
    assert [o.key for o in outcomes] == [r.key for r in requests]
    by_key = {g.key: g for g in complete}
    assert all(g.token_ids == by_key[g.key].token_ids for g in ended)
    # Only those that could end within the steps run: nothing decoded past the stop.
    assert len(steps) == 12
    assert max(len(g.token_ids) for g in ended) <= 12
