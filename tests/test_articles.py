"""The article pipeline: prompt, generation, post-processing, metrics and rendering together."""

from __future__ import annotations

from pathlib import Path

from articlegen.generator import DecodingConfig
from articlegen.generator.articles import (
    ArticleFailure,
    ArticleInput,
    ArticleWriter,
    WrittenArticle,
)
from articlegen.generator.engine import Engine
from articlegen.generator.loading import LoadedModel
from articlegen.generator.postprocess import words
from articlegen.generator.templates import Templates

CONFIG = DecodingConfig(top_p=0.9, max_new_tokens=40)


def _writer(model: LoadedModel, templates_dir: Path | None = None) -> ArticleWriter:
    return ArticleWriter(Engine(model, batch_size=4), Templates(templates_dir))


def test_articles_are_written_and_failures_stay_alone(tiny_model: LoadedModel) -> None:
    inputs = [
        ArticleInput("a", "Night trains", CONFIG, 1, "nucleus", extra={"audience": "commuters"}),
        ArticleInput("b", "Sourdough", CONFIG, 2, "nucleus", prompt="A starter is"),
        ArticleInput("c", "Too long", CONFIG, 3, "nucleus", prompt="word " * 600),
    ]
    result = _writer(tiny_model).write(inputs)
    outcomes, batch = result.outcomes, result.batch_metrics
    a, b, c = outcomes
    assert isinstance(a, WrittenArticle)
    assert isinstance(b, WrittenArticle)
    assert isinstance(c, ArticleFailure)
    assert "over the model's context of 512 tokens" in c.reason

    assert a.prompt_text == "Night trains\n\nA guide for commuters.\n\n"  # from prompt.txt.j2
    assert b.prompt_text == "A starter is"
    for article in (a, b):
        assert article.text.title == article.rendered["markdown"].splitlines()[0][2:]
        assert article.rendered["markdown"].startswith(f"# {article.text.title}\n")
        assert f"<title>{article.text.title}</title>" in article.rendered["html"]
        assert article.metrics.word_count == len(words(article.text.body))
        assert article.generation.tokens_generated == 40
        assert "truncated" in article.metrics.flags
        assert article.template_name == "article"
        assert len(article.template_version) == 13  # two 6-hex digests joined
    assert set(batch) == {"self_bleu_4", "zipf_coefficient"}
    # Every stage is timed, and generation (two 40-token articles) is one of them.
    assert set(result.seconds) == {"prompting", "generation", "post-processing", "rendering"}
    assert all(s >= 0 for s in result.seconds.values())
    assert result.seconds["generation"] > 0


def test_a_missing_template_fails_only_its_article(tiny_model: LoadedModel, tmp_path: Path) -> None:
    (tmp_path / "news.md.j2").write_text("# {{ title }}\n", encoding="utf-8")
    (tmp_path / "news.html.j2").write_text("<h1>{{ title }}</h1>\n", encoding="utf-8")
    inputs = [
        ArticleInput("ok", "Trains", CONFIG, 1, "nucleus", template="news"),
        ArticleInput("bad", "Boats", CONFIG, 2, "nucleus", template="missing"),
    ]
    ok, bad = _writer(tiny_model, tmp_path).write(inputs).outcomes
    assert isinstance(ok, WrittenArticle)
    assert ok.rendered == {"markdown": "# Trains\n", "html": "<h1>Trains</h1>\n"}
    assert isinstance(bad, ArticleFailure)
    assert bad.reason.startswith("template `missing.md.j2` not found")


def test_generating_then_finishing_apart_writes_what_write_does(tiny_model: LoadedModel) -> None:
    """The two halves the flow runs in different threads, for batches k and k+1, make the
    same articles as `write`; finishing one generated batch twice (a retried write-back)
    makes them again."""
    greedy = DecodingConfig(do_sample=False, max_new_tokens=12)
    inputs = [
        ArticleInput("a", "Night trains", greedy, 1, "greedy"),
        ArticleInput("b", "Sourdough", greedy, 2, "greedy", prompt="A starter is"),
        ArticleInput("c", "Too long", greedy, 3, "greedy", prompt="word " * 600),
        ArticleInput("d", "Boats", greedy, 4, "greedy", template="missing"),
    ]
    writer = _writer(tiny_model)
    whole = writer.write(inputs)
    generated = writer.generate(inputs)
    assert set(generated.seconds) == {"prompting", "generation"}
    once, twice = writer.finish(generated), writer.finish(generated)
    assert twice.outcomes == once.outcomes
    assert [_article(o) for o in once.outcomes] == [_article(o) for o in whole.outcomes]
    assert isinstance(once.outcomes[0], WrittenArticle)
    assert [type(o) for o in once.outcomes[2:]] == [ArticleFailure, ArticleFailure]
    assert once.batch_metrics == whole.batch_metrics
    assert set(once.seconds) == set(whole.seconds)


def _article(outcome: WrittenArticle | ArticleFailure) -> object:
    """What an outcome says, without the generation's timing."""
    if isinstance(outcome, ArticleFailure):
        return outcome
    g = outcome.generation
    return (outcome.key, outcome.prompt_text, g.text, g.token_ids, outcome.text, outcome.rendered)
