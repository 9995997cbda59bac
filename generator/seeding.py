"""Everything random about an article comes from its seed.

A seed is derived from a base seed and the article's identity (or drawn fresh and recorded), and
`draw` turns each row's seed into its sampling uniforms and its embedding noise: on the CPU, from
a generator per article, in a fixed order, so a row's randomness is the same whatever the batch,
the device or the other rows' lengths.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

import torch

from articlegen.core.bounds import SEED_BITS
from articlegen.generator.requests import Prepared

__all__ = ["derive_seed", "draw", "fresh_seed"]


def derive_seed(base: int, *parts: int | str) -> int:
    """A seed for one article from a base seed and its identity (prompt, variant, version)."""
    text = ":".join(str(p) for p in (base, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> (64 - SEED_BITS)


def fresh_seed() -> int:
    """A random seed, for articles whose config sets none (it is recorded with the article)."""
    return secrets.randbits(SEED_BITS)


def draw(
    batch: Sequence[Prepared], width: int, dim: int, embedding_rms: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-row uniforms [B, T] and noise [B, width + T, dim] for a batch left-padded to
    `width`; no noise tensor (None) when no row of the batch asks for noise.

    Noise has standard deviation `noise_sigma * embedding_rms`: measured against the
    embeddings' own scale, one sigma means the same for models of any width.
    """
    steps = max(p.request.config.max_new_tokens for p in batch)
    uniforms = torch.ones((len(batch), steps))
    noisy = any(p.request.config.noise_sigma > 0 for p in batch)
    # As large as the batch's cache: only batches that use it pay for it.
    noise = torch.zeros((len(batch), width + steps, dim)) if noisy else None
    for row, prepared in enumerate(batch):
        config = prepared.request.config
        generator = torch.Generator().manual_seed(prepared.request.seed)
        # 1 - U[0, 1) lies in (0, 1]: the inverse-CDF draw never lands on an empty token.
        uniforms[row, : config.max_new_tokens] = 1 - torch.rand(
            config.max_new_tokens, generator=generator
        )
        if noise is not None and config.noise_sigma > 0:
            n = len(prepared.ids)
            scale = config.noise_sigma * embedding_rms
            noise[row, width - n : width] = scale * torch.randn(n, dim, generator=generator)
            if config.noise_every_step:
                noise[row, width : width + config.max_new_tokens] = scale * torch.randn(
                    config.max_new_tokens, dim, generator=generator
                )
    return uniforms.to(device), None if noise is None else noise.to(device)
