"""Loading models: the cache, provenance, device and dtype choice, and errors with a way out."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from articlegen.core.errors import ModelError
from articlegen.generator.loading import (
    RANDOM_WEIGHTS_FILE,
    ModelSpec,
    _load_uncached,
    load_model,
    resolve_device,
    resolve_dtype,
)
from articlegen.generator.model_init import SIZES, init_model


def test_a_model_is_loaded_once_per_process(tiny_model_dir: Path) -> None:
    first = load_model(ModelSpec(str(tiny_model_dir)))
    again = load_model(ModelSpec(str(tiny_model_dir)))
    assert first is again
    other = load_model(ModelSpec(str(tiny_model_dir), dtype="bfloat16"))
    assert other is not first
    assert other.dtype == torch.bfloat16
    assert next(other.model.parameters()).dtype == torch.bfloat16


def test_local_provenance_is_a_content_hash(tiny_model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    original = _load_uncached(ModelSpec(str(tiny_model_dir)))
    same = _load_uncached(ModelSpec(str(copy)))
    assert original.revision.startswith("sha256:")
    assert original.revision == same.revision  # content, not location
    (copy / "generation_config.json").write_text('{"max_length": 30}', encoding="utf-8")
    assert _load_uncached(ModelSpec(str(copy))).revision != original.revision


def test_loaded_model_facts(tiny_model_dir: Path) -> None:
    loaded = load_model(ModelSpec(str(tiny_model_dir), device="cpu"))
    assert loaded.device == torch.device("cpu")
    assert loaded.dtype == torch.float32
    assert loaded.context_length == SIZES["tiny"].n_positions
    assert loaded.tokenizer.pad_token is None  # like GPT-2
    assert not loaded.model.training


def test_random_weights_are_known_by_the_file_models_init_writes(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    marker = json.loads((tiny_model_dir / RANDOM_WEIGHTS_FILE).read_text(encoding="utf-8"))
    assert marker["random_weights"] is True
    assert (marker["written_by"], marker["size"], marker["seed"]) == (
        "articlegen models init",
        "tiny",
        0,
    )
    assert _load_uncached(ModelSpec(str(tiny_model_dir), device="cpu")).random_weights
    # The same weights without the file: a directory of someone's making, not known as random.
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    (copy / RANDOM_WEIGHTS_FILE).unlink()
    loaded = _load_uncached(ModelSpec(str(copy), device="cpu"))
    assert (loaded.local, loaded.random_weights) == (True, False)


def test_device_and_dtype_choice() -> None:
    # float32 on the CPU unless asked: bfloat16 there changes the numbers.
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    assert resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():  # a GPU machine: auto takes it, in a half-precision type
        assert resolve_device("auto").type == "cuda"
        assert resolve_dtype("auto", torch.device("cuda")) in (torch.bfloat16, torch.float16)
    else:
        assert resolve_device("auto").type in ("cpu", "mps")
        with pytest.raises(ModelError, match="ARTICLEGEN_DEVICE is cuda but no CUDA GPU"):
            resolve_device("cuda")


def test_hub_model_offline_names_the_three_ways_out() -> None:
    with pytest.raises(ModelError) as caught:
        load_model(ModelSpec("gpt2"))
    message = str(caught.value)
    assert message.startswith(
        "cannot load model 'gpt2': HF_HUB_OFFLINE is set and the model is not in the local cache"
    )
    assert "(1) choose a local model with `articlegen config set model DIR`" in message
    assert "(2) download the model on a connected machine (`hf download gpt2`)" in message
    assert "(3) run `articlegen demo`" in message
    assert "huggingface-cli" not in message  # gone from huggingface_hub 1.0


def test_an_unreachable_hub_fails_at_once_without_transformers_retries(tmp_path: Path) -> None:
    # Not offline, but the Hub's address refuses connections (a closed loopback port): the probe
    # answers, and the minute of download retries never starts.
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HUB_ETAG_TIMEOUT": "1",
    }
    script = (
        "from articlegen.generator.loading import ModelSpec, load_model\n"
        "try:\n    load_model(ModelSpec('gpt2'))\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith(
        "ModelError cannot load model 'gpt2': the Hugging Face Hub can't be reached and the "
        "model is not in the local cache."
    )


def test_missing_model_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ModelError) as caught:
        load_model(ModelSpec(str(missing)))
    assert str(caught.value) == (
        f"model directory {missing} does not exist: check ARTICLEGEN_MODEL, or create one with "
        f"`articlegen models init {missing}`"
    )


def test_model_directory_without_tokenizer(tiny_model_dir: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_dir / name, bare / name)
    with pytest.raises(ModelError, match=r"has no tokenizer \(tokenizer.json, vocab.json"):
        load_model(ModelSpec(str(bare)))


def test_model_init_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("keep me", encoding="utf-8")
    with pytest.raises(ModelError, match="exists and is not empty"):
        init_model(tmp_path)
    assert (tmp_path / "x").read_text(encoding="utf-8") == "keep me"


def test_model_init_trains_the_tokenizer_on_a_given_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("zebra crossing " * 200 + "\n" + "quokka smile " * 200, encoding="utf-8")
    report = init_model(tmp_path / "model", corpus=corpus)
    loaded = _load_uncached(ModelSpec(str(report.path)))
    # Words frequent in the corpus become single tokens.
    assert len(loaded.tokenizer("zebra", add_special_tokens=False)["input_ids"]) == 1
    assert report.vocabulary == len(loaded.tokenizer)
    assert report.parameters == sum(p.numel() for p in loaded.model.parameters())


def test_small_has_gpt2_small_shape(tmp_path: Path) -> None:
    report = init_model(tmp_path / "small", size="small")
    loaded = _load_uncached(ModelSpec(str(report.path)))
    config = loaded.model.config
    assert (config.n_layer, config.n_head, config.n_embd, config.n_positions) == (12, 12, 768, 1024)
    assert config.vocab_size == 50_257
    assert 124_000_000 < report.parameters < 125_000_000  # GPT-2 small: 124M
