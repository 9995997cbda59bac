"""Shared fixtures: real SQLite files and real PostgreSQL databases, the CLI, the presets.

PostgreSQL tests use a fresh database per test on the server at ARTICLEGEN_TEST_POSTGRES_URL
(default: postgresql://postgres@127.0.0.1:5432/test). When it is down they skip locally, and fail
under CI=true, where a missing server must never pass silently.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid

# No test touches the network: the Hub is off and its cache is a fresh, empty directory. Set
# before anything imports huggingface_hub, which reads these once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="articlegen-hf-")
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# Batch sizes measured by tests stay in the session's own cache, never the user's.
os.environ["ARTICLEGEN_CACHE_DIR"] = tempfile.mkdtemp(prefix="articlegen-cache-")
# A developer's own articlegen.toml (the demo writes one) must not reach the tests: tests that
# are about the file set their own.
os.environ["ARTICLEGEN_CONFIG"] = os.path.join(
    tempfile.mkdtemp(prefix="articlegen-config-"), "none.toml"
)
# Batches of exactly --batch-size articles, as most tests count them; the tests of continuous
# batching across a run's batches set their own depth (tests/queue_support.py, `seeded_run`).
os.environ["ARTICLEGEN_QUEUE_DEPTH"] = "1"
# Prefect: no telemetry, its own home, no log shipping (a 2 s stall per flow in tests).
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="articlegen-prefect-")
os.environ["PREFECT_LOGGING_TO_API_ENABLED"] = "false"
os.environ["PREFECT_SERVER_API_HOST"] = "127.0.0.1"
# Under pytest-xdist each worker takes its share of the cores (and the child processes it starts
# inherit it): torch's default, a thread per core in every worker, oversubscribes them.
if _workers := os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(_workers))))
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hypothesis
import psycopg
import pytest
from click.testing import CliRunner, Result
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright
from sqlalchemy import func, select

from articlegen.cli import cli
from articlegen.db import Article, Database, Job, Prompt
from articlegen.generator import PresetCatalog, load_presets
from articlegen.generator.loading import LoadedModel, ModelSpec, load_model
from articlegen.generator.model_init import EOS_TOKEN, init_model
from articlegen.runs import close_contexts

# The scratch directories made above are this test process's own: removed as it exits.
for _made in ("HF_HOME", "ARTICLEGEN_CACHE_DIR", "PREFECT_HOME"):
    atexit.register(shutil.rmtree, os.environ[_made], ignore_errors=True)
atexit.register(shutil.rmtree, os.path.dirname(os.environ["ARTICLEGEN_CONFIG"]), True)

# Tests time nothing, and the suite shares the cores between its workers: no Hypothesis
# deadline, and pages get 15 s (not Playwright's 5) to show what a test waits for.
hypothesis.settings.register_profile("suite", deadline=None)
hypothesis.settings.load_profile("suite")
expect.set_options(timeout=15_000)

POSTGRES_ADMIN_URL = os.environ.get(
    "ARTICLEGEN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", "postgres"]


def _postgres_down_reason() -> str | None:
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=5):
            return None
    except psycopg.OperationalError as exc:
        return f"PostgreSQL at {POSTGRES_ADMIN_URL} is not reachable: {exc}".strip()


@pytest.fixture(scope="session")
def postgres_admin() -> str:
    """The admin URL of a reachable PostgreSQL server (fails under CI=true when down)."""
    reason = _postgres_down_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: PostgreSQL tests must run)")
        pytest.skip(reason)
    return POSTGRES_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_admin: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"articlegen_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = postgres_admin.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(postgres_admin, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def chromium_path() -> str:
    """Debian's Chromium, which the browser tests drive through Playwright: missing, they skip
    locally and fail under CI=true (`.ci/run` installs it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is not installed (CI=true: the browser tests must run)")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium with JavaScript on, driven by Playwright, for one test module.

    Not longer: while Playwright's synchronous API is open it keeps an event loop running in
    this thread, and Prefect, seeing it, turns its synchronous calls into coroutines.
    """
    executable = chromium_path()
    with sync_playwright() as playwright:
        # --no-sandbox: the tests may run as root, where Chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


def record_dialogs(page: Page) -> list[str]:
    """The messages of every alert(), confirm() or prompt() the page opens (each dismissed):
    a script that got through would most often show itself so."""
    opened: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        opened.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    return opened


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'articlegen.db'}"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once on a SQLite file and once on PostgreSQL."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """An open, migrated database on each backend."""
    db = Database.open(database_url)
    yield db
    db.close()


@pytest.fixture(scope="session")
def catalog() -> PresetCatalog:
    """The bundled decoding presets."""
    return load_presets()


@dataclass
class CliHarness:
    """Runs `articlegen` in-process against one database, as a user would from a shell."""

    database_url: str
    cwd: Path

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, input: str | None = None
    ) -> Result:
        runner = CliRunner()
        full_env = {"ARTICLEGEN_DATABASE_URL": self.database_url, **(env or {})}
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(self.cwd)
            return runner.invoke(cli, list(args), env=full_env, input=input, catch_exceptions=False)


@pytest.fixture
def run_cli(database_url: str, tmp_path: Path) -> CliHarness:
    """The CLI bound to the test's database (both backends)."""
    return CliHarness(database_url=database_url, cwd=tmp_path)


def row_counts(db: Database) -> dict[str, int]:
    """Rows per table: a rejected operation must leave these unchanged."""
    with db.session() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Prompt, Job, Article)
        }


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny GPT-2 with a BPE tokenizer, built as `articlegen models init` builds it."""
    path = tmp_path_factory.mktemp("models") / "tiny"
    init_model(path, size="tiny", seed=0)
    return path


# Exactness tests compare float32 runs; on a GPU machine `auto` would pick CUDA and bfloat16.
CPU_FP32 = {"device": "cpu", "dtype": "float32"}


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path) -> LoadedModel:
    """The tiny model, loaded through the same loader the product uses (CPU, float32)."""
    return load_model(ModelSpec(str(tiny_model_dir), **CPU_FP32))  # type: ignore[arg-type]


# A Llama-3-like chat template: the BOS written by the template itself, each turn between header
# tokens, the assistant's turn opened last.
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>"
    "\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
CHAT_TOKENS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


@pytest.fixture(scope="session")
def chat_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model as an instruct model: a BOS token the tokenizer adds to every text (as
    Llama's does), header and end-of-turn tokens, and a Llama-3-like chat template."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tmp_path_factory.mktemp("models") / "chat"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.add_special_tokens(
        {"bos_token": "<|begin_of_text|>", "additional_special_tokens": CHAT_TOKENS}
    )
    bos = (tokenizer.bos_token, tokenizer.bos_token_id)
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos[0]} $A", pair=f"{bos[0]} $A {bos[0]} $B", special_tokens=[bos]
    )
    tokenizer.chat_template = LLAMA3_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    shutil.copy(tiny_model_dir / "random_weights.json", path)  # still random weights
    return path


@pytest.fixture(scope="session")
def chat_model(chat_model_dir: Path) -> LoadedModel:
    """The tiny instruct model, loaded as the product loads it (CPU, float32)."""
    return load_model(ModelSpec(str(chat_model_dir), **CPU_FP32))  # type: ignore[arg-type]


MICRO_WORDS = [
    EOS_TOKEN,
    *"alpha beta gamma delta eps zeta eta theta iota kappa lam mu nu xi omi".split(),
]


@pytest.fixture(scope="session")
def micro_model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """A GPT-2 over a 16-word vocabulary: small enough to search exhaustively.

    Its weights are drawn wider than GPT-2's init so next-token distributions are peaked and
    varied, which makes the decoding property tests discriminating.
    """
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate(MICRO_WORDS)}
    backend = Tokenizer(WordLevel(vocab, unk_token=EOS_TOKEN))
    backend.pre_tokenizer = WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend, eos_token=EOS_TOKEN, unk_token=EOS_TOKEN
    )
    config = GPT2Config(
        vocab_size=len(vocab),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        initializer_range=0.4,
        bos_token_id=0,
        eos_token_id=0,
    )
    import torch

    torch.manual_seed(1)
    model = GPT2LMHeadModel(config)
    path = tmp_path_factory.mktemp("models") / "micro"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return load_model(ModelSpec(str(path), **CPU_FP32))  # type: ignore[arg-type]


@pytest.fixture
def fresh_contexts() -> Iterator[None]:
    """Each test's settings get their own run context, closed after it."""
    yield
    close_contexts()


@pytest.fixture
def training_env(tmp_path: Path, tiny_model_dir: Path) -> dict[str, str]:
    """Where models go, and the CPU in float32 (a GPU machine would pick bfloat16)."""
    return {
        "ARTICLEGEN_MODELS_DIR": str(tmp_path / "models"),
        "ARTICLEGEN_DEVICE": "cpu",
        "ARTICLEGEN_DTYPE": "float32",
        "ARTICLEGEN_MODEL": str(tiny_model_dir),
    }
