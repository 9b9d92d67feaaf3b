"""EAT-IEA: a small exposure-assessment network that predicts a per-pixel exposure residual map.

Layout (DESIGN.md §3)::

    RGB ─ pad to ×32 ─ Haar DWT ─┬─ low band (lightness) ─ conv encoder + channel attention
                                 │      1/4 ─ 1/8 ─ 1/16 ─ 1/32 ─ EAT blocks (deformable attention)
                                 └─ high bands + their gradients (structure)
                                        short-range conv path (1/4) + long-range path (1/16)
    decoder 1/32 → 1/16 → 1/8 → 1/4 → 1/2 with skips from both branches
    → four residual sub-band maps (each a learned offset plus a learned gain on the photo's own grey
      sub-band, so map detail can follow photo detail) ─ inverse Haar DWT ─ tanh ─ crop back

**EAT block.** Every coarse position is a query. Keys and values are *sampled* from the same feature map
with ``grid_sample`` at a small grid of reference points moved by learned offsets, plus at a few learned
interest points (a soft-argmax of a saliency head, so they are differentiable and per image). During the
exploration share of training the trainer sets :attr:`EATBlock.explore` > 0; offsets that head into the
quadrant of the nearest interest point are then damped by ``1 − explore`` and all others amplified by
``1 + explore``, pushing the network to look at backgrounds (skies, walls, shadows), where exposure fails.
In the exploitation share ``explore`` is 0 and the offsets are free; in ``eval()`` the schedule is never
applied. All of it is tensor ops, so it runs on any device without a host round trip.

Everything here is a pure ``nn.Module``: no file I/O, no global state.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .dwt import haar_dwt, haar_idwt

#: BT.601 luma weights, the same as exposure_cli.color.GREY_WEIGHTS (kept here so models/ needs only torch).
_GREY = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class EATIEAConfig:
    """Hyper-parameters of :class:`EATIEA`. Stored in the weights card so a checkpoint rebuilds its model.

    Attributes:
        widths: Lightness encoder channels at 1/4, 1/8, 1/16 and 1/32 of the input.
        structure_width: Short-range structure path channels (at 1/4).
        structure_long_width: Long-range structure path channels (at 1/16).
        decoder_widths: Decoder channels at 1/16, 1/8, 1/4 and 1/2.
        eat_blocks: Number of EAT blocks at 1/32.
        heads: Attention heads (= offset groups) per EAT block.
        ref_grid: Reference points per side (ref_grid² sampled keys per head).
        interest_points: Learned interest points per EAT block.
        offset_range: Largest offset, in normalised [-1, 1] image coordinates.
        mlp_ratio: Hidden width of the EAT block MLP relative to the block width.
        use_dwt: False replaces the Haar split by a learned stride-2 conv seen by both branches (ablation).
        use_structure: False drops the structure branch (ablation).
        use_schedule: False ignores the explore/exploit schedule (ablation).
    """

    widths: tuple[int, int, int, int] = (16, 32, 96, 192)
    structure_width: int = 16
    structure_long_width: int = 48
    decoder_widths: tuple[int, int, int, int] = (96, 48, 16, 12)
    eat_blocks: int = 3
    heads: int = 6
    ref_grid: int = 8
    interest_points: int = 4
    offset_range: float = 0.25
    mlp_ratio: float = 2.0
    use_dwt: bool = True
    use_structure: bool = True
    use_schedule: bool = True
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EATIEAConfig":
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known}
        return cls(**kwargs)


#: Input height and width are padded up to a multiple of this (Haar 1/2 × four stride-2 stages = 1/32).
MULTIPLE = 32


def _conv_bn_relu(cin: int, cout: int, stride: int = 1, kernel: int = 3, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SqueezeExcite(nn.Module):
    """Channel attention: rescale channels by a gate computed from their global means."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(4, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean(dim=(2, 3), keepdim=True)
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(gate), inplace=True)))
        return x * gate


class SeparableBlock(nn.Module):
    """Residual depthwise-separable block (depthwise 3×3 → pointwise), optional channel attention."""

    def __init__(self, channels: int, attention: bool = False, dilation: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, 1, dilation, dilation=dilation, groups=channels, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.attention = SqueezeExcite(channels) if attention else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.depthwise(x)), inplace=True)
        y = self.bn2(self.pointwise(y))
        return F.relu(x + self.attention(y), inplace=True)


def _coordinate_grid(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Pixel-centre coordinates in grid_sample's normalised [-1, 1] convention (align_corners=False), h×w×2 (x, y)."""
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def _fourier(coords: torch.Tensor) -> torch.Tensor:
    """Fourier features of (x, y) coordinates: …×2 → …×8."""
    scaled = torch.cat([coords * math.pi, coords * (2 * math.pi)], dim=-1)
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=-1)


def _adaptive_pool(feat: torch.Tensor, g: int) -> torch.Tensor:
    """``adaptive_avg_pool2d(feat, (g, g))``; during ONNX export the same averages as two matrix products
    (the ONNX exporter refuses adaptive pooling whose output size does not divide the input size)."""
    if not torch.onnx.is_in_onnx_export():
        return F.adaptive_avg_pool2d(feat, (g, g))
    h, w = int(feat.shape[-2]), int(feat.shape[-1])

    def matrix(n: int) -> torch.Tensor:
        m = torch.zeros(g, n, dtype=feat.dtype)
        for i in range(g):
            start, end = (i * n) // g, -((-(i + 1) * n) // g)
            m[i, start:end] = 1.0 / (end - start)
        return m

    return matrix(h) @ feat @ matrix(w).t()


class EATBlock(nn.Module):
    """Deformable-attention block with learned interest points and the explore/exploit offset schedule.

    Args:
        dim: Channels of the coarse feature map.
        heads: Attention heads; each head samples its own keys (offset groups = heads).
        ref_grid: Reference points per side.
        interest_points: Learned interest points (extra keys, and the targets of the schedule).
        offset_range: Largest offset in normalised coordinates.
        mlp_ratio: MLP hidden width relative to `dim`.
        use_schedule: When False the block ignores :attr:`explore` (ablation).
    """

    def __init__(
        self,
        dim: int,
        heads: int = 4,
        ref_grid: int = 8,
        interest_points: int = 4,
        offset_range: float = 0.25,
        mlp_ratio: float = 2.0,
        use_schedule: bool = True,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.dim, self.heads, self.ref_grid = dim, heads, ref_grid
        self.interest_points, self.offset_range, self.use_schedule = interest_points, offset_range, use_schedule
        self.positional = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)  # conditional positional encoding
        self.norm1 = nn.LayerNorm(dim)
        self.offset_net = nn.Sequential(
            nn.Conv2d(dim, dim, 3, 1, 1, groups=dim),
            nn.GELU(),
            nn.Conv2d(dim, 2 * heads, 1),
        )
        self.interest_head = nn.Conv2d(dim, interest_points, 1)
        self.query_pos = nn.Linear(8, dim)
        self.key_pos = nn.Linear(8, dim // heads)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        # Offsets start near zero, so training begins from a plain grid of keys.
        nn.init.zeros_(self.offset_net[-1].weight)
        nn.init.zeros_(self.offset_net[-1].bias)
        #: Exploration strength in [0, 1), set by the trainer from its progress; 0 = exploitation (free offsets).
        self.register_buffer("explore", torch.zeros(()), persistent=False)

    def coordinate_grid(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """Pixel-centre coordinates of an h×w map, h×w×2 (x, y), on `like`'s device and dtype."""
        return _coordinate_grid(h, w, like.device, like.dtype)

    def query_embedding(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """Positional term of the h·w queries, 1×HW×C."""
        return self.query_pos(_fourier(self.coordinate_grid(h, w, like).reshape(1, h * w, 2)))

    def interest_coordinates(self, feat: torch.Tensor) -> torch.Tensor:
        """Learned interest points of each image: soft-argmax of the saliency head, B×P×2 in [-1, 1]."""
        b, _, h, w = feat.shape
        logits = self.interest_head(feat).flatten(2)  # B, P, HW
        weights = torch.softmax(logits.float(), dim=-1).to(feat.dtype)
        grid = self.coordinate_grid(h, w, feat).reshape(h * w, 2)
        return weights @ grid

    def sample_positions(self, feat: torch.Tensor, interest: torch.Tensor) -> torch.Tensor:
        """Key positions per head: reference grid + (scheduled) offsets, (B·heads)×g×g×2 in [-1, 1]."""
        b = feat.shape[0]
        g = self.ref_grid
        pooled = _adaptive_pool(feat, g)
        offsets = torch.tanh(self.offset_net(pooled)) * self.offset_range  # B, 2·heads, g, g
        offsets = offsets.reshape(b, self.heads, 2, g, g).permute(0, 1, 3, 4, 2)  # B, heads, g, g, 2
        reference = self.coordinate_grid(g, g, offsets)  # g, g, 2
        if self.training and self.use_schedule:
            offsets = self._schedule(offsets, reference, interest)
        positions = (reference + offsets).clamp(-1.0, 1.0)
        return positions.reshape(b * self.heads, g, g, 2)

    def _schedule(self, offsets: torch.Tensor, reference: torch.Tensor, interest: torch.Tensor) -> torch.Tensor:
        """Explore phase: damp offsets heading into the nearest interest point's quadrant, amplify the rest."""
        strength = self.explore.to(offsets.dtype)
        g = self.ref_grid
        ref = reference.reshape(1, g * g, 1, 2)
        towards = interest.detach().unsqueeze(1) - ref  # B, g·g, P, 2: from each reference point to each interest point
        nearest = towards.pow(2).sum(-1).argmin(dim=-1)  # B, g·g
        direction = torch.gather(towards, 2, nearest[..., None, None].expand(-1, -1, 1, 2)).reshape(-1, 1, g, g, 2)
        same_quadrant = ((torch.sign(offsets) * torch.sign(direction)) > 0).all(dim=-1, keepdim=True)
        scale = torch.where(same_quadrant, 1.0 - strength, 1.0 + strength)
        return offsets * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x + self.positional(x)
        tokens = self.norm1(x.flatten(2).transpose(1, 2))  # B, HW, C
        feat = tokens.transpose(1, 2).reshape(b, c, h, w)

        interest = self.interest_coordinates(feat)  # B, P, 2
        positions = self.sample_positions(feat, interest)  # B·heads, g, g, 2
        head_dim = c // self.heads
        grouped = feat.reshape(b * self.heads, head_dim, h, w)
        sampled = F.grid_sample(grouped, positions, mode="bilinear", padding_mode="border", align_corners=False)
        sampled = sampled.flatten(2).transpose(1, 2)  # B·heads, g², head_dim
        at_interest = F.grid_sample(
            grouped, interest.repeat_interleave(self.heads, dim=0).unsqueeze(1), mode="bilinear",
            padding_mode="border", align_corners=False,
        ).flatten(2).transpose(1, 2)  # B·heads, P, head_dim
        key_coords = torch.cat(
            [positions.flatten(1, 2), interest.repeat_interleave(self.heads, dim=0)], dim=1
        )  # B·heads, g²+P, 2
        keys = torch.cat([sampled, at_interest], dim=1) + self.key_pos(_fourier(key_coords))
        n_keys = keys.shape[1]
        # Reassemble per-head sampled channels into full-width key tokens: B, n_keys, C.
        keys = keys.reshape(b, self.heads, n_keys, head_dim).permute(0, 2, 1, 3).reshape(b, n_keys, c)

        q = self.q(tokens + self.query_embedding(h, w, tokens))
        k, v = self.kv(keys).chunk(2, dim=-1)
        q = q.reshape(b, h * w, self.heads, head_dim).transpose(1, 2)
        k = k.reshape(b, n_keys, self.heads, head_dim).transpose(1, 2)
        v = v.reshape(b, n_keys, self.heads, head_dim).transpose(1, 2)
        attended = F.scaled_dot_product_attention(q, k, v)  # B, heads, HW, head_dim
        attended = attended.transpose(1, 2).reshape(b, h * w, c)
        out = x.flatten(2).transpose(1, 2) + self.proj(attended)
        out = out + self.mlp(self.norm2(out))
        return out.transpose(1, 2).reshape(b, c, h, w)


class EATIEA(nn.Module):
    """The exposure residual network. ``forward(rgb)`` → residual map in [-1, 1] at the input size.

    Args:
        config: Architecture hyper-parameters (see :class:`EATIEAConfig`).

    Input: B×3×H×W RGB in [0, 1], any H and W (padded internally to a multiple of 32 and cropped back).
    Output: B×1×H×W, ``r = grey(ideal) − grey(observed)``; r < 0 over-exposed, r > 0 under-exposed.
    """

    def __init__(self, config: EATIEAConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or EATIEAConfig()
        w4, w8, w16, w32 = cfg.widths
        d16, d8, d4, d2 = cfg.decoder_widths
        if not cfg.use_dwt:
            # Ablation: a learned stride-2 "split" with the same output shape, seen whole by both branches.
            self.learned_split = nn.Conv2d(3, 12, 2, 2)
        light_in = 3 if cfg.use_dwt else 12
        self.light_stem = _conv_bn_relu(light_in, w4, stride=2)  # 1/4
        self.light4 = SeparableBlock(w4)
        self.light8 = nn.Sequential(_conv_bn_relu(w4, w8, stride=2), SeparableBlock(w8, attention=True))
        self.light16 = nn.Sequential(_conv_bn_relu(w8, w16, stride=2), SeparableBlock(w16, attention=True))
        self.light32 = nn.Sequential(_conv_bn_relu(w16, w32, stride=2), SeparableBlock(w32, attention=True))
        self.eat = nn.ModuleList(
            EATBlock(w32, cfg.heads, cfg.ref_grid, cfg.interest_points, cfg.offset_range, cfg.mlp_ratio, cfg.use_schedule)
            for _ in range(cfg.eat_blocks)
        )
        s4 = s16 = 0
        if cfg.use_structure:
            s4, s16 = cfg.structure_width, cfg.structure_long_width
            # 12 input channels: 9 high bands + 3 gradient magnitudes, or the learned split (ablation).
            self.structure_short = nn.Sequential(_conv_bn_relu(12, s4, stride=2), SeparableBlock(s4))
            self.structure_long = nn.Sequential(
                _conv_bn_relu(s4, s16), _conv_bn_relu(s16, s16, dilation=2), _conv_bn_relu(s16, s16, dilation=4)
            )
            self.structure_global = nn.Conv2d(s16, s16, 1)
        self.fuse16 = nn.Sequential(_conv_bn_relu(w32 + w16 + s16, d16, kernel=1), SeparableBlock(d16))
        self.fuse8 = nn.Sequential(_conv_bn_relu(d16 + w8, d8, kernel=1), SeparableBlock(d8))
        self.fuse4 = nn.Sequential(_conv_bn_relu(d8 + w4 + s4, d4, kernel=1), SeparableBlock(d4))
        self.fuse2 = nn.Sequential(_conv_bn_relu(d4 + 12, d2, kernel=1), SeparableBlock(d2))
        self.head_offset = nn.Conv2d(d2, 4, 1)
        self.head_gain = nn.Conv2d(d2, 4, 1)
        nn.init.zeros_(self.head_gain.weight)
        nn.init.zeros_(self.head_gain.bias)
        self.register_buffer("grey_weights", torch.tensor(_GREY).reshape(1, 3, 1, 1), persistent=False)

    # -- schedule -----------------------------------------------------------------------------------------
    def set_explore(self, strength: float) -> None:
        """Set the exploration strength of every EAT block (trainer: > 0 while exploring, 0 afterwards)."""
        for block in self.eat:
            block.explore.fill_(float(strength))

    # -- forward ------------------------------------------------------------------------------------------
    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        height, width = rgb.shape[-2:]
        pad_h, pad_w = (-height) % MULTIPLE, (-width) % MULTIPLE
        x = rgb
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        residual = self._forward_padded(x)
        return residual[..., :height, :width]

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Front end → (lightness input, structure input, decoder skip at 1/2, grey sub-bands for the head)."""
        grey = (x * self.grey_weights).sum(dim=1, keepdim=True)
        grey_low, grey_high = haar_dwt(grey)
        grey_bands = torch.cat([grey_low, grey_high], dim=1)  # 4 channels at 1/2
        if not self.config.use_dwt:
            split = self.learned_split(x - 0.5)
            return split, split, split, grey_bands
        low, high = haar_dwt(x - 0.5)
        # Gradients of the luminance high bands: where detail is lost (clipping, crushed shadows) they vanish.
        dx = F.pad((grey_high[..., :, 1:] - grey_high[..., :, :-1]).abs(), (0, 1, 0, 0))
        dy = F.pad((grey_high[..., 1:, :] - grey_high[..., :-1, :]).abs(), (0, 0, 0, 1))
        structure = torch.cat([high, dx + dy], dim=1)  # 9 + 3 channels
        return low, structure, torch.cat([low, high], dim=1), grey_bands

    def _forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        up = lambda t, ref: F.interpolate(t, size=ref.shape[-2:], mode="bilinear", align_corners=False)  # noqa: E731
        light_in, structure_in, skip2, grey_bands = self._split(x)

        l4 = self.light4(self.light_stem(light_in))
        l8 = self.light8(l4)
        l16 = self.light16(l8)
        l32 = self.light32(l16)
        for block in self.eat:
            l32 = block(l32)

        skips16, skips4 = [l16], [l4]
        if self.config.use_structure:
            s4 = self.structure_short(structure_in)
            s16 = self.structure_long(F.avg_pool2d(s4, 4))
            s16 = s16 + self.structure_global(s16.mean(dim=(2, 3), keepdim=True))
            skips16.append(s16)
            skips4.append(s4)

        d16 = self.fuse16(torch.cat([up(l32, l16), *skips16], dim=1))
        d8 = self.fuse8(torch.cat([up(d16, l8), l8], dim=1))
        d4 = self.fuse4(torch.cat([up(d8, l4), *skips4], dim=1))
        d2 = self.fuse2(torch.cat([up(d4, skip2), skip2], dim=1))
        bands = self.head_offset(d2) + self.head_gain(d2) * grey_bands
        full = haar_idwt(bands[:, :1], bands[:, 1:])
        return torch.tanh(full)


__all__ = ["EATBlock", "EATIEA", "EATIEAConfig", "MULTIPLE", "SqueezeExcite", "SeparableBlock"]
