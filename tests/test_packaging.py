"""The distribution claims one name, `articlegen`, and carries its data; a project of the user's
own, with its own `flows/` and `db.py`, cannot shadow any part of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL

from .test_flows import prefect_server  # noqa: F401  (the session's Prefect server)

ROOT = Path(__file__).resolve().parent.parent
# What each folder of the client's design card must bring into the wheel, package data included.
EXPECTED = [
    "articlegen/cli/base.py",
    "articlegen/core/errors.py",
    "articlegen/db/models/__init__.py",
    "articlegen/db/registry.py",
    "articlegen/db/migrations/env.py",
    "articlegen/db/migrations/versions/0001_initial.py",
    "articlegen/db/migrations/versions/0005_registry.py",
    "articlegen/examples/corpus.txt",
    "articlegen/examples/prompts.csv",
    "articlegen/flows/generate.py",
    "articlegen/flows/train.py",
    "articlegen/generator/engine.py",
    "articlegen/generator/presets.toml",
    "articlegen/runs/batch.py",
    "articlegen/templates/article.html.j2",
    "articlegen/templates/prompt.txt.j2",
    "articlegen/training/trainer.py",
]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from this checkout by its own build backend (hatchling)."""
    out = tmp_path_factory.mktemp("dist")
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*pip, "-w", str(out), str(ROOT)], check=True, capture_output=True)
    (built,) = out.glob("articlegen-*.whl")
    return built


def test_the_wheel_claims_one_top_level_name_and_carries_its_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"articlegen"}
    for path in EXPECTED:
        assert path in names, path
    # The repository's own tests, benchmark and build files stay out.
    assert not [n for n in names if n.startswith(("articlegen/tests", "tests/", "bench/"))]


# Run from a user's project: its own `flows` package and `db` module would fail loudly if
# anything of ours imported them, and `generator.py` sits beside them too.
USER_PROJECT = {
    "flows/__init__.py": "raise ImportError('the user project\\'s flows/ was imported')\n",
    "flows/generate.py": "raise ImportError('the user project\\'s flows/generate.py')\n",
    "db.py": "raise ImportError('the user project\\'s db.py was imported')\n",
    "generator.py": "raise ImportError('the user project\\'s generator.py was imported')\n",
}
SCRIPT = """
import json, sys
from pathlib import Path
import articlegen
from articlegen.flows import import_prompts, run_generate
from articlegen.runs import GenerateParams

imported = import_prompts("prompts.csv")
result = run_generate(GenerateParams(batch_size=2, overrides={"max_new_tokens": 4}))
print(json.dumps({
    "articlegen": articlegen.__file__,
    "imported": imported,
    "done": result.done,
    "status": result.status,
    "shadowable": sorted({"db", "flows", "generator"} & set(sys.modules)),
}))
"""


def test_flows_run_from_a_project_with_its_own_flows_and_db(
    prefect_server: None,  # noqa: F811
    wheel: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)  # a pure-Python wheel installs by unzipping
    project = tmp_path / "project"
    for name, text in USER_PROJECT.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text, encoding="utf-8")
    (project / "prompts.csv").write_text("topic\nNight trains\nHeat pumps\n", encoding="utf-8")
    env = {
        **os.environ,
        # The unzipped wheel first: it, not this checkout, is what runs.
        "PYTHONPATH": str(installed),
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "ARTICLEGEN_DATABASE_URL": f"sqlite:///{project / 'articles.db'}",
        "ARTICLEGEN_MODEL": str(tiny_model_dir),
        "ARTICLEGEN_DEVICE": "cpu",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=project,  # `python -c` puts the working directory first on sys.path
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["articlegen"] == str(installed / "articlegen" / "__init__.py")
    assert report["imported"] == [
        {"file": "prompts.csv", "inserted": 2, "updated": 0, "unchanged": 0, "rejected": 0}
    ]
    assert (report["done"], report["status"]) == (2, "completed")
    assert report["shadowable"] == []
