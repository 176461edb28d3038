"""The multi-exit U-ViT: a ViT-based U-Net whose depth can be cut short per denoising step.

Layout (Bao et al., U-ViT): a small conv stem and a patch embedding turn the image into tokens;
a time token and a class token join them; `depth` in-blocks, one mid-block and `depth` out-blocks
follow, out-block k receiving a long skip from in-block k. Exit k (Tian et al.) runs only the outer
k levels of the U: in-blocks 1..k, then out-blocks k..1, then the shared head. The full depth runs
every level and the mid-block. So exits share every weight they use, a shallow exit costs about
2k/(2*depth+1) of the blocks, and the stem, head and embeddings are the only fixed costs (kept small
on purpose: the shallowest exit must cost <= 40% of the full model per step).

The conditioning (time + label embedding) reaches every token of every block, by default as
adaLN-Zero modulation (DiT), else added to the tokens: without that, a small model trained
briefly ignores the label.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

FULL_EXIT = "full"


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, shape [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32,
                                                           device=timesteps.device) / half)
    args = timesteps.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block; an out-block first fuses its long skip with a linear layer.

    Conditioning `adaln` (DiT's adaLN-Zero): the time + label embedding sets a per-sample shift,
    scale and gate of both sub-layers (gates start at zero). `add`: it is added to every token.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, skip: bool = False, adaln: bool = True):
        super().__init__()
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=not adaln)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=not adaln)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.modulation = nn.Linear(dim, 6 * dim) if adaln else None
        if adaln:
            nn.init.zeros_(self.modulation.weight)
            nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        if self.modulation is None:
            x = x + cond
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(cond)).chunk(6, dim=-1)
        x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1) + shift1)
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


class MultiExitUViT(ModelMixin, ConfigMixin):
    """Class-conditional U-ViT with early exits; predicts v (or epsilon) for a diffusers scheduler.

    `exits` lists the U levels after which the model may exit (each in 1..depth-1... or depth);
    the full depth (every level plus the mid-block) is always available as exit "full".
    Class index `num_classes` is the null label used for classifier-free guidance.
    """

    @register_to_config
    def __init__(self, sample_size: int = 28, in_channels: int = 1, patch_size: int = 4,
                 hidden_size: int = 128, depth: int = 4, num_heads: int = 4, mlp_ratio: float = 3.0,
                 stem_channels: int = 16, num_classes: int = 10, exits: tuple[int, ...] = (1, 2, 3),
                 conditioning: str = "adaln"):
        super().__init__()
        if sample_size % patch_size:
            raise ValueError(f"sample_size {sample_size} must be a multiple of patch_size {patch_size}")
        exits = tuple(int(e) for e in exits)
        if not exits or any(e < 1 or e > depth for e in exits) or list(exits) != sorted(set(exits)):
            raise ValueError(f"exits must be increasing levels in 1..{depth}, got {list(exits)}")
        if conditioning not in ("adaln", "add"):
            raise ValueError(f"conditioning must be 'adaln' or 'add', got {conditioning!r}")
        adaln = conditioning == "adaln"
        self.grid = sample_size // patch_size
        num_tokens = self.grid * self.grid
        d = hidden_size
        # Fixed cost in front: one 3x3 conv, then a strided patch embedding.
        self.stem = nn.Conv2d(in_channels, stem_channels, 3, padding=1)
        self.patch_embed = nn.Conv2d(stem_channels, d, patch_size, stride=patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, 2 + num_tokens, d))
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.label_embed = nn.Embedding(num_classes + 1, d)
        self.in_blocks = nn.ModuleList(Block(d, num_heads, mlp_ratio, adaln=adaln) for _ in range(depth))
        self.mid_block = Block(d, num_heads, mlp_ratio, adaln=adaln)
        self.out_blocks = nn.ModuleList(Block(d, num_heads, mlp_ratio, skip=True, adaln=adaln) for _ in range(depth))
        # Fixed cost behind: norm + linear back to stem_channels per pixel, one 3x3 conv refiner.
        self.norm_out = nn.LayerNorm(d)
        self.unpatch = nn.Linear(d, patch_size * patch_size * stem_channels)
        self.refiner = nn.Conv2d(stem_channels, in_channels, 3, padding=1)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.zeros_(self.refiner.weight)
        nn.init.zeros_(self.refiner.bias)

    # ---- exits -----------------------------------------------------------------------------------
    @property
    def exit_names(self) -> list[str]:
        """Exit names, shallowest first: `exit1`.. for the configured levels, then `full`."""
        return [f"exit{i + 1}" for i in range(len(self.config.exits))] + [FULL_EXIT]

    def exit_level(self, exit_name: str) -> int | None:
        """U levels an exit runs (None = the full depth with the mid-block)."""
        if exit_name == FULL_EXIT:
            return None
        names = self.exit_names
        if exit_name not in names:
            raise ValueError(f"unknown exit {exit_name!r}; known exits: {names}")
        return self.config.exits[names.index(exit_name)]

    # ---- forward ---------------------------------------------------------------------------------
    def _encode(self, sample: torch.Tensor, timestep: torch.Tensor, class_labels: torch.Tensor):
        b = sample.shape[0]
        if timestep.ndim == 0:
            timestep = timestep.expand(b)
        t_emb = self.time_mlp(timestep_embedding(timestep, self.config.hidden_size).to(sample.dtype))
        cond = t_emb + self.label_embed(class_labels)
        x = self.patch_embed(F.silu(self.stem(sample))).flatten(2).transpose(1, 2)
        x = torch.cat([t_emb[:, None], self.label_embed(class_labels)[:, None], x], dim=1) + self.pos_embed
        return x, cond[:, None]

    def _decode(self, x: torch.Tensor) -> torch.Tensor:
        p, g, c = self.config.patch_size, self.grid, self.config.stem_channels
        x = self.unpatch(self.norm_out(x[:, 2:]))  # drop the time and class tokens
        x = x.reshape(-1, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(-1, c, g * p, g * p)
        return self.refiner(F.silu(x))

    def _up(self, h: torch.Tensor, skips: list[torch.Tensor], level: int, cond: torch.Tensor) -> torch.Tensor:
        for k in range(level - 1, -1, -1):
            h = self.out_blocks[k](h, cond, skips[k])
        return self._decode(h)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int, class_labels: torch.Tensor,
                exit: str = FULL_EXIT) -> torch.Tensor:
        """Prediction of one exit, same shape as `sample`."""
        level = self.exit_level(exit)
        timestep = torch.as_tensor(timestep, device=sample.device)
        x, cond = self._encode(sample, timestep, class_labels)
        skips = []
        for block in self.in_blocks[: self.config.depth if level is None else level]:
            x = block(x, cond)
            skips.append(x)
        if level is None:
            x = self.mid_block(x, cond)
            level = self.config.depth
        return self._up(x, skips, level, cond)

    def forward_all_exits(self, sample: torch.Tensor, timestep: torch.Tensor,
                          class_labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every exit's prediction at once, sharing the encoder pass (for the joint training loss)."""
        x, cond = self._encode(sample, timestep, class_labels)
        skips = []
        for block in self.in_blocks:
            x = block(x, cond)
            skips.append(x)
        out = {name: self._up(skips[level - 1], skips, level, cond)
               for name, level in zip(self.exit_names[:-1], self.config.exits)}
        out[FULL_EXIT] = self._up(self.mid_block(x, cond), skips, self.config.depth, cond)
        return out
