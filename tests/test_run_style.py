"""A run's own prompt format and system message, over every prompt's: `articlegen generate
--prompt-format/--system` and the flow form's `prompt_format` and `system` fields."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.utilities.callables import parameter_schema
from sqlalchemy import select

from articlegen.core.errors import ConfigError
from articlegen.db import Article, Database, Prompt, PromptStatus
from articlegen.flows.generate import generate_articles, run_generate
from articlegen.generator import load_presets
from articlegen.generator.chat import PromptStyle, parse_style
from articlegen.importing import import_prompts_csv
from articlegen.runs import GenerateParams, close_contexts

from .conftest import CliHarness, row_counts
from .test_flows import prefect_server  # noqa: F401  (the session's Prefect server)

# A user's preset that sets a system message (ARTICLEGEN_PRESETS_FILE).
BRIEFED = '[briefed]\nsystem = "Be brief."\n'

CSV = """external_id,topic,system,prompt_format
own,Night trains,Row system.,
plain,Coffee,,plain
"""


@pytest.fixture
def chat_prompts(
    prefect_server: None,  # noqa: F811
    sqlite_url: str,
    chat_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Database]:
    """The CSV's two prompts imported, and runs set to the instruct model and this database."""
    settings = {"DATABASE_URL": sqlite_url, "MODEL": str(chat_model_dir), "DEVICE": "cpu"}
    for name, value in settings.items():
        monkeypatch.setenv(f"ARTICLEGEN_{name}", value)
    path = tmp_path / "prompts.csv"
    path.write_text(CSV, encoding="utf-8")
    db = Database.open(sqlite_url)
    try:
        assert import_prompts_csv(db, path, load_presets()).inserted == 2
        yield db
    finally:
        db.close()
        close_contexts()


def _articles(db: Database) -> dict[str | None, Article]:
    with db.session(write=False) as session:
        return {a.prompt.external_id: a for a in session.scalars(select(Article))}


def test_the_run_frames_every_prompt_over_its_own(
    chat_prompts: Database, chat_model_dir: Path
) -> None:
    # From the form, as the Prefect UI sends it: the row that asked for the plain form and
    # the row with its own system message both take the run's.
    result = generate_articles(
        prompt_format="chat", system="Run system.", max_new_tokens="4", batch_size=2
    )
    assert not isinstance(result, BaseException)
    articles = _articles(chat_prompts)
    with chat_prompts.session(write=False) as session:
        statuses = set(session.scalars(select(Prompt.status)))
    assert statuses == {PromptStatus.DONE}
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(chat_model_dir)
    for key, topic in (("own", "Night trains"), ("plain", "Coffee")):
        article = articles[key]
        assert article.prompt_format == "chat"
        assert article.prompt_text is not None
        system = [{"role": "system", "content": "Run system."}]
        assert article.prompt_text.startswith(
            str(tokenizer.apply_chat_template(system, tokenize=False))
        )
        assert f'titled "{topic}"' in article.prompt_text
        assert "Row system." not in article.prompt_text


def test_the_form_offers_the_run_style_fields() -> None:
    fields = parameter_schema(generate_articles).model_dump()["properties"]
    assert fields["prompt_format"]["enum"] == ["", "plain", "chat", "auto"]
    assert (fields["prompt_format"]["default"], fields["system"]["default"]) == ("", "")
    assert (fields["no_system"]["type"], fields["no_system"]["default"]) == ("boolean", False)


@pytest.mark.parametrize(
    ("options", "env", "message"),
    [
        (
            ["--prompt-format", "plain", "--system", "Be brief."],
            {},
            "the run asks for the plain form (--prompt-format plain, the form's `prompt_format`) "
            "and gives a system message, the run's own (--system, the form's `system`): the "
            "plain form has no system message; use chat or auto (for an instruct model), --system "
            '"" (the form\'s `no_system`) to run without one, or drop it',
        ),
        (
            ["--prompt-format", "plain"],
            {"ARTICLEGEN_SYSTEM_MESSAGE": "Be brief."},
            "and gives a system message, ARTICLEGEN_SYSTEM_MESSAGE, which the prompts setting none "
            "take",
        ),
        (
            ["--prompt-format", "chat"],
            {},
            "the run asks for the chat form (--prompt-format chat, the form's fields) but model",
        ),
        (["--system", "Be brief."], {}, "has no chat template: use an instruct model"),
        (["--dry-run", "--prompt-format", "chat"], {}, "has no chat template"),
        (
            ["--dry-run", "--preset", "briefed"],
            {"presets": BRIEFED},
            "the prompt has a system message, but model",
        ),
        # On the instruct model: framed once, before anything is claimed.
        (
            ["--system", "<|eot_id|><|start_header_id|>system<|end_header_id|>"],
            {"model": "chat"},
            "the system message holds '<|eot_id|>', a special token",
        ),
        (
            ["--system", "Be brief."],
            {"model": "chat", "ARTICLEGEN_PROMPT_FORMAT": "plain"},
            "cannot be used: `system` is set but `prompt_format` is `plain`, which has no system "
            "message: set `prompt_format` to `chat` or `auto` (for an instruct model), or drop "
            "`system` (`prompt_format` from ARTICLEGEN_PROMPT_FORMAT, `system` from the run "
            "(--system))\n",
        ),
        (
            ["--system", "a\x1bb"],
            {"model": "chat"},
            "`system`: holds the control character U+001B at character 2: remove it",
        ),
        # The run's preset is the layer under it, for every prompt that names none; without
        # --preset, the default one (which a presets file may redefine).
        (
            ["--prompt-format", "plain", "--preset", "briefed"],
            {"presets": BRIEFED},
            "gives a system message, preset briefed's, which the prompts naming no preset take",
        ),
        (
            ["--preset", "briefed"],
            {"presets": BRIEFED},
            "the prompt has a system message, but model",
        ),
        (
            ["--prompt-format", "plain"],
            {"presets": '[nucleus]\ntop_p = 0.9\nsystem = "Be brief."\n'},
            "gives a system message, preset nucleus's, which the prompts naming no preset take",
        ),
        # Run-wide decoding settings apply over every prompt's own: an id the model has no
        # token for would fail them all.
        (
            ["--set", "stop_token_ids=[3, 99999]"],
            {},
            "Error: the run's stop_token_ids (--set, the form's `more_decoding`) [99999] are "
            "not tokens of model",
        ),
        # What any prompt framed so would need, over the context, fails every prompt alike:
        # here the template's own markup and what --max-new-tokens asks for.
        (
            ["--prompt-format", "chat", "--max-new-tokens", "510"],
            {"model": "chat"},
            "tokens, and with 510 new (max_new_tokens) that is over the model's context of 512: "
            "no prompt framed so would fit; lower --max-new-tokens\n",
        ),
        (
            ["--system", "word " * 600],
            {"model": "chat"},
            "tokens, and with 1 new (max_new_tokens) that is over the model's context of 512: "
            "no prompt framed so would fit; shorten the system message\n",
        ),
    ],
)
def test_a_run_style_every_prompt_would_fail_on_is_refused_before_anything_is_claimed(
    run_cli: CliHarness,
    database: Database,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    options: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    path = tmp_path / "prompts.csv"
    path.write_text("topic\nTea\n", encoding="utf-8")
    assert run_cli("import", str(path)).exit_code == 0
    before = row_counts(database)
    # The tiny GPT-2 has no chat template; the instruct one has.
    env = dict(env)
    model = request.getfixturevalue(f"{env.pop('model', 'tiny')}_model_dir")
    if "presets" in env:
        (tmp_path / "presets.toml").write_text(env.pop("presets"), encoding="utf-8")
        env["ARTICLEGEN_PRESETS_FILE"] = str(tmp_path / "presets.toml")
    env |= {"ARTICLEGEN_MODEL": str(model), "ARTICLEGEN_DEVICE": "cpu"}
    result = run_cli("generate", "--batch-size", "2", *options, env=env)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: ")
    assert message in result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert row_counts(database) == before


def test_an_unknown_prompt_format_is_a_usage_error(run_cli: CliHarness) -> None:
    bad = run_cli("generate", "--prompt-format", "markdown")
    assert bad.exit_code == 2
    assert "'markdown' is not one of 'plain', 'chat', 'auto'" in bad.stderr


def test_a_blank_system_runs_every_prompt_without_one(
    chat_prompts: Database, chat_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `--system ""`: no system message, whatever the prompt, its preset or the setting says.
    monkeypatch.setenv("ARTICLEGEN_SYSTEM_MESSAGE", "Setting system.")
    style = parse_style({"prompt_format": None, "system": ""}, clears=True)
    assert style == PromptStyle(system="")
    params = GenerateParams(style=style, batch_size=2, overrides={"max_new_tokens": 4})
    result = run_generate(params)
    articles = _articles(chat_prompts)
    assert (result.done, result.failed) == (2, 0)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(chat_model_dir)
    own = articles["own"]
    assert own.prompt_format == "chat"
    assert own.prompt_text is not None
    user = own.prompt_text.split("<|start_header_id|>user<|end_header_id|>\n\n", 1)[1]
    alone = [{"role": "user", "content": user.split("<|eot_id|>", 1)[0]}]
    assert own.prompt_text == tokenizer.apply_chat_template(
        alone, add_generation_prompt=True, tokenize=False
    )
    assert "system" not in own.prompt_text
    # The row that asked for the plain form takes it: no system message stands in its way.
    assert articles["plain"].prompt_format == "plain"


def test_the_forms_no_system_box_runs_every_prompt_without_one(
    chat_prompts: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The form's empty `system` field means "not set"; its `no_system` box is `--system ""`.
    monkeypatch.setenv("ARTICLEGEN_SYSTEM_MESSAGE", "Setting system.")
    result = generate_articles(no_system=True, max_new_tokens="4", batch_size=2)
    assert not isinstance(result, BaseException)
    articles = _articles(chat_prompts)
    own = articles["own"]
    assert own.prompt_format == "chat"
    assert own.prompt_text is not None
    assert "<|start_header_id|>user<|end_header_id|>" in own.prompt_text
    assert "<|start_header_id|>system" not in own.prompt_text
    assert "Row system." not in own.prompt_text
    assert articles["plain"].prompt_format == "plain"


def test_a_blank_system_lets_the_plain_form_run_under_a_system_setting(
    prefect_server: None,  # noqa: F811
    run_cli: CliHarness,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    path = tmp_path / "prompts.csv"
    path.write_text("topic\nTea\n", encoding="utf-8")
    assert run_cli("import", str(path)).exit_code == 0
    env = {"ARTICLEGEN_MODEL": str(tiny_model_dir), "ARTICLEGEN_SYSTEM_MESSAGE": "Be brief."}
    options = ["generate", "--dry-run", "--batch-size", "2", "--prompt-format", "plain"]
    refused = run_cli(*options, env=env)
    assert refused.exit_code == 1
    assert "gives a system message, ARTICLEGEN_SYSTEM_MESSAGE" in refused.stderr
    planned = run_cli(*options, "--system", "", env=env)
    assert planned.exit_code == 0, planned.output


def test_a_prompts_failure_names_the_run_as_the_layer_that_set_a_field() -> None:
    # A row that asks for the plain form, under a run's --system: the run is named, not the
    # prompt (which set no system message).
    with pytest.raises(ConfigError) as refused:
        load_presets().style(None, PromptStyle(prompt_format="plain"), run=PromptStyle(system="x"))
    assert str(refused.value).endswith("(`system` from the run (--system))")


def test_the_start_token_the_plain_form_adds_counts_towards_the_context(
    run_cli: CliHarness, database: Database, chat_model_dir: Path, tmp_path: Path
) -> None:
    # The instruct tokenizer puts its BOS before plain text, as Llama's does: a one-word prompt
    # takes one token more than its text, and the run that fits only without it is refused.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(chat_model_dir)
    text = len(tokenizer("Topic", add_special_tokens=False)["input_ids"])
    assert len(tokenizer("Topic")["input_ids"]) == text + 1
    path = tmp_path / "prompts.csv"
    path.write_text("topic\nTea\n", encoding="utf-8")
    assert run_cli("import", str(path)).exit_code == 0
    before = row_counts(database)
    env = {"ARTICLEGEN_MODEL": str(chat_model_dir), "ARTICLEGEN_DEVICE": "cpu"}
    options = ["--prompt-format", "plain", "--max-new-tokens", str(512 - text)]
    result = run_cli("generate", *options, env=env)
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        f"Error: a one-word prompt in plain form is {text + 1} tokens, and with {512 - text} "
        "new (max_new_tokens) that is over the model's context of 512: no prompt framed so "
        "would fit; lower --max-new-tokens\n"
    )
    assert row_counts(database) == before
