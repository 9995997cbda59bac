"""Files at the edge beyond the catalogue (`test_bad_inputs.py`): what its one-command cases
can't show. A rejects file that can't be written by default, named pipes given as a corpus or a
settings file, damaged weights of the pickle kind, a shard that is not there, and a model loaded
for training: each refused by name, nothing written."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from articlegen.core.errors import InputError, ModelError
from articlegen.core.files import check_output_file, quoted
from articlegen.db import Database
from articlegen.generator import PresetCatalog
from articlegen.generator.loading import ModelSpec, load_model, load_trainable
from articlegen.importing import import_prompts_csv
from articlegen.training.corpus import check_files

from .conftest import CliHarness, row_counts

BAD_ROW = "topic,priority\nGood,1\nBad,high\n"


def test_quoting_a_long_value_cuts_it_and_says_how_long_it_was() -> None:
    assert quoted("short") == "'short'"
    assert quoted("x" * 61) == "'" + "x" * 60 + "'… (61 characters)"
    assert quoted("\x1b[2J") == "'\\x1b[2J'"  # repr: a control is shown, never sent


def test_the_default_rejects_file_is_checked_before_the_valid_rows_are_written(
    database: Database, catalog: PresetCatalog, tmp_path: Path
) -> None:
    path = tmp_path / "prompts.csv"
    path.write_text(BAD_ROW, encoding="utf-8")
    (tmp_path / "prompts.rejects.csv").mkdir()  # where the rejects would go
    before = row_counts(database)
    with pytest.raises(InputError) as caught:
        import_prompts_csv(database, path, catalog, skip_invalid=True)
    assert str(caught.value) == (
        f"rejects file {tmp_path / 'prompts.rejects.csv'} is a directory: give the path of a "
        "file to write (in it, or elsewhere)"
    )
    assert row_counts(database) == before


def test_a_dry_run_does_not_need_somewhere_to_write_rejects(
    database: Database, catalog: PresetCatalog, tmp_path: Path
) -> None:
    """The import flow's drop folder makes its `rejected/` only when it will write there."""
    path = tmp_path / "prompts.csv"
    path.write_text(BAD_ROW, encoding="utf-8")
    report = import_prompts_csv(
        database,
        path,
        catalog,
        dry_run=True,
        skip_invalid=True,
        rejects_path=tmp_path / "rejected" / "prompts.rejects.csv",
    )
    assert (report.inserted, report.rejected, report.dry_run) == (1, 1, True)


def test_a_rejects_file_that_is_a_pipe_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(InputError) as caught:
        check_output_file(tmp_path / "pipe", "rejects file", (tmp_path / "in.csv",))
    assert str(caught.value) == (
        f"rejects file {tmp_path / 'pipe'} is a named pipe (FIFO), which has no end to read up "
        "to: give a regular file"
    )


def test_a_corpus_that_is_a_named_pipe_is_refused_without_opening_it(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "corpus.txt")
    with pytest.raises(InputError) as caught:
        check_files([tmp_path / "corpus.txt"])
    assert str(caught.value) == (
        f"corpus file {tmp_path / 'corpus.txt'} is a named pipe (FIFO), which has no end to read "
        "up to: give the path of a regular file"
    )


def test_models_init_refuses_a_tokenizer_corpus_that_is_a_pipe(
    run_cli: CliHarness, tmp_path: Path
) -> None:
    os.mkfifo(tmp_path / "corpus.txt")
    result = run_cli(
        "models", "init", str(tmp_path / "m"), "--corpus", str(tmp_path / "corpus.txt")
    )
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: corpus {tmp_path / 'corpus.txt'} is a named pipe (FIFO), which has no end to "
        "read up to: give the path of a regular file\n"
    )
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("kind", ["fifo", "huge"])
def test_a_settings_file_that_is_a_pipe_or_huge_is_refused(
    run_cli: CliHarness, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "articlegen.toml"
    if kind == "fifo":
        os.mkfifo(path)
        message = f"{path} is not a regular file: remove it, or point ARTICLEGEN_CONFIG at a "
    else:
        path.write_text("# padding\n" * 200_000, encoding="utf-8")
        message = f"{path} is 2,000,000 bytes, over the 1,048,576 a settings file may have"
    result = run_cli("prompts", "list", env={"ARTICLEGEN_CONFIG": str(path)})
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: " + message)


# --- damaged model directories -----------------------------------------------------------------


def _copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model)
    return model


def _as_pickle(model: Path) -> Path:
    """The model's weights saved as pytorch_model.bin (the format before safetensors)."""
    from safetensors.torch import load_file

    weights = model / "pytorch_model.bin"
    torch.save(load_file(model / "model.safetensors"), weights)
    (model / "model.safetensors").unlink()
    return weights


CPU = {"device": "cpu", "dtype": "float32"}


def test_pickled_weights_still_load(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = _copy(tiny_model_dir, tmp_path)
    _as_pickle(model)
    loaded = load_model(ModelSpec(str(model), **CPU), share=False)  # type: ignore[arg-type]
    assert loaded.model.config.n_layer == 2


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("truncate", "[Errno 22] Invalid argument"),
        ("garbage", "torch.load cannot read it as tensors (a damaged file, or not weights at all)"),
    ],
)
def test_damaged_pickled_weights_are_named(
    tiny_model_dir: Path, tmp_path: Path, damage: str, reason: str
) -> None:
    model = _copy(tiny_model_dir, tmp_path)
    weights = _as_pickle(model)
    if damage == "truncate":
        os.truncate(weights, 5000)
    else:
        weights.write_bytes(b"\x80\x02garbage" * 100)
    with pytest.raises(ModelError) as caught:
        load_model(ModelSpec(str(model), **CPU), share=False)  # type: ignore[arg-type]
    assert str(caught.value).startswith(
        f"cannot load the weights (pytorch_model.bin) of model {model}: "
    )
    assert reason in str(caught.value)
    assert str(caught.value).endswith(
        "the file is damaged or was cut short in copying; copy the model again, or save it "
        "again with `model.save_pretrained(DIR)`"
    )


def test_a_shard_the_index_names_must_be_there(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = _copy(tiny_model_dir, tmp_path)
    (model / "model.safetensors").rename(model / "model-00001-of-00002.safetensors")
    index = {
        "weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00002-of-00002.safetensors",
        }
    }
    (model / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")
    with pytest.raises(ModelError) as caught:
        load_model(ModelSpec(str(model), **CPU), share=False)  # type: ignore[arg-type]
    assert str(caught.value) == (
        f"model directory {model}: model.safetensors.index.json names shards that are not there "
        "(model-00002-of-00002.safetensors): copy the whole model again"
    )


def test_a_model_loaded_for_training_is_checked_too(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`train --base` loads through `load_trainable`: a mismatched config.json is refused there."""
    model = _copy(tiny_model_dir, tmp_path)
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    (model / "config.json").write_text(json.dumps({**config, "n_layer": 3}), encoding="utf-8")
    with pytest.raises(ModelError) as caught:
        load_trainable(ModelSpec(str(model)))
    assert str(caught.value).startswith(
        f"model {model}: config.json does not match the weights (the weights lack 12 of the "
        "model's tensors, e.g. transformer.h.2.attn.c_attn.bias)"
    )
