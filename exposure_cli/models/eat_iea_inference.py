"""EAT-IEA folded for CPU inference: the same maps as :class:`~.eat_iea.EATIEA` in ``eval()``, in fewer passes.

:func:`fold_for_inference` builds a separate module from a trained network in eval mode; the trained
network is not touched (training never sees this module). What changes is only how the same arithmetic is
laid out, so the maps agree with the network's to float rounding (tested: ≤ 1e-5):

* **Front end as one convolution.** ``x − 0.5``, the Haar DWT of the three colour channels and the Haar
  DWT of the grey image are all linear in the pixels of each 2×2 block, so one fixed 2×2 stride-2
  convolution (16 outputs: LL, 9 high bands, grey LL, 3 grey high bands) replaces the slicing, sums, grey
  reduction and concatenations.
* **BatchNorm folded** into the convolution before it (running statistics are constants in eval).
* **Convolution, bias, residual add and ReLU in one oneDNN call** on maps large enough to pay for it
  (``mkldnn::_convolution_pointwise``, the fused op Inductor uses; separate ops where it is missing). This
  also keeps the 1×1 convolutions on oneDNN: PyTorch sends a 1×1 convolution of a batch under 16 on one
  thread to its slower im2col path (``_slow_conv2d_forward``).
* **No concatenation before the decoder's 1×1 convolutions.** ``conv(cat(up(a), b, c))`` is
  ``up(conv_a(a)) + conv_b(b) + conv_c(c)``: bilinear upsampling and a 1×1 convolution are both linear
  and act on different axes (and the upsampling weights sum to one, so the bias passes through), so the
  coarse input is projected *before* it is upsampled, on a quarter of the pixels, and each skip's share
  is added by its own convolution.
* **Inverse Haar DWT as a 4×4 matrix and a pixel shuffle** of the head's four sub-bands.
* **EAT blocks** (at 1/32 of the input) with their coordinate grids and query embeddings computed once
  per map size (:class:`CachedEATBlock`); otherwise unchanged.

The module is for float32 on the CPU: the analyzer keeps the trained module on other devices (its CUDA
path runs under autocast).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .eat_iea import MULTIPLE, EATBlock, EATIEA, SeparableBlock, SqueezeExcite

#: Orthonormal Haar signs of one 2×2 block ``[[a, b], [c, d]]`` per band, in the order of ``haar_dwt``.
_HAAR_SIGNS = torch.tensor(
    [
        [[1.0, 1.0], [1.0, 1.0]],  # LL
        [[1.0, 1.0], [-1.0, -1.0]],  # LH: top row − bottom row
        [[1.0, -1.0], [1.0, -1.0]],  # HL: left column − right column
        [[1.0, -1.0], [-1.0, 1.0]],  # HH
    ]
)
#: Inverse Haar: the pixels (a, b, c, d) of a block from its bands (LL, LH, HL, HH); the matrix is symmetric.
_INVERSE_HAAR = 0.5 * _HAAR_SIGNS.reshape(4, 4)


def _fold_batchnorm(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d):
    """Weight and bias of ``bn(conv(x))`` as one convolution (running statistics, eval mode)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    if bias is not None:
        shift = shift + bias * scale
    return weight * scale.reshape(-1, *([1] * (weight.dim() - 1))), shift


def _fused_conv_available() -> bool:
    """Whether this PyTorch has oneDNN's fused CPU convolutions (``mkldnn::_convolution_pointwise``, the ops
    Inductor uses for conv + bias + add + ReLU) and they run here."""
    try:
        op = torch.ops.mkldnn._convolution_pointwise
        x = torch.ones(1, 2, 3, 3)
        y = op.binary(x, x, torch.ones(2, 2, 1, 1), torch.zeros(2), [0, 0], [1, 1], [1, 1], 1, "add", None,
                      "relu", [], "")
        return bool(torch.equal(y, torch.full_like(x, 3.0)))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def _pixels(x: torch.Tensor) -> torch.Tensor:
    """A channels-last B×C×H×W tensor as its (B·H·W)×C matrix of pixels (a view, also of a channel slice)."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


#: Checked once at import; without the fused ops the same arithmetic runs as separate PyTorch ops.
FUSED_CONV = _fused_conv_available()
#: The fused op costs ~50 µs more per call than ``F.conv2d`` (it reorders the weight each time), which a
#: map of fewer pixels (batch × height × width of the input) does not win back (measured on 1 thread).
FUSED_MIN_PIXELS = 128 * 128


class FoldedConv(nn.Module):
    """A convolution with a bias (BatchNorm folded in) whose caller can ask for ``+ add`` and a ReLU.

    ``conv(x) + bias (+ add) (→ relu)`` is one oneDNN call where :data:`FUSED_CONV` and the input has at
    least :data:`FUSED_MIN_PIXELS` pixels (one pass over the output instead of three; 1×1 convolutions also
    stay on oneDNN, where PyTorch sends a small batch on one thread to its slower im2col path), separate ops
    otherwise. Same arithmetic either way.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, stride: int = 1, padding: int = 0,
                 dilation: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None) -> "FoldedConv":
        weight, bias = (conv.weight, conv.bias) if bn is None else _fold_batchnorm(conv.weight, conv.bias, bn)
        return cls(weight, bias, conv.stride[0], conv.padding[0], conv.dilation[0], conv.groups)

    def forward(self, x: torch.Tensor, add: torch.Tensor | None = None, relu: bool = False) -> torch.Tensor:
        if FUSED_CONV and x.shape[0] * x.shape[-2] * x.shape[-1] >= FUSED_MIN_PIXELS:
            args = ([self.padding] * 2, [self.stride] * 2, [self.dilation] * 2, self.groups)
            if add is None:
                return torch.ops.mkldnn._convolution_pointwise(x, self.weight, self.bias, *args,
                                                               "relu" if relu else "none", [], "")
            return torch.ops.mkldnn._convolution_pointwise.binary(x, add, self.weight, self.bias, *args, "add",
                                                                  None, "relu" if relu else None, [], "")
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if add is not None:
            y += add
        return F.relu(y, inplace=True) if relu else y


class FoldedConvReLU(nn.Module):
    """``relu(bn(conv(x)))`` of ``_conv_bn_relu`` as one convolution with a bias and a ReLU."""

    def __init__(self, block: nn.Sequential) -> None:
        super().__init__()
        self.conv = FoldedConv.from_conv(block[0], block[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x, relu=True)


class FoldedSqueezeExcite(nn.Module):
    """The channel gate of :class:`SqueezeExcite` (a copy; the caller applies it)."""

    def __init__(self, se: SqueezeExcite) -> None:
        super().__init__()
        self.fc1, self.fc2 = copy.deepcopy(se.fc1), copy.deepcopy(se.fc2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.fc2(F.relu(self.fc1(gate), inplace=True)))


class FoldedSeparableBlock(nn.Module):
    """:class:`SeparableBlock` with both BatchNorms folded: ``relu(x + gate · pointwise(relu(depthwise(x))))``."""

    def __init__(self, block: SeparableBlock) -> None:
        super().__init__()
        self.depthwise = FoldedConv.from_conv(block.depthwise, block.bn1)
        self.pointwise = FoldedConv.from_conv(block.pointwise, block.bn2)
        self.gate = FoldedSqueezeExcite(block.attention) if isinstance(block.attention, SqueezeExcite) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.depthwise(x, relu=True)
        if self.gate is None:
            return self.pointwise(hidden, add=x, relu=True)
        y = self.pointwise(hidden)
        return F.relu(torch.addcmul(x, y, self.gate(y)), inplace=True)


class FoldedFuse(nn.Module):
    """A decoder stage ``block(relu(bn(conv1x1(cat([up(coarse), *skips])))))`` without the concatenation.

    The coarse input is projected by its share of the 1×1 weights (and the bias) before the bilinear
    upsampling; each skip's share is then added to it by its own 1×1 convolution, the last one with the ReLU.
    A skip may be wider than what the stage reads (``skip_widths``; the stage reads the first
    ``skip_channels`` of each): the other channels get zero weights, so the leading channels of a wider
    tensor are read without copying them out.
    """

    def __init__(self, fuse: nn.Sequential, coarse_channels: int, skip_channels: list[int],
                 skip_widths: list[int] | None = None) -> None:
        super().__init__()
        weight, bias = _fold_batchnorm(fuse[0][0].weight, None, fuse[0][1])
        edges = [0, coarse_channels]
        for channels in skip_channels:
            edges.append(edges[-1] + channels)
        if edges[-1] != weight.shape[1]:
            raise ValueError(f"fuse stage takes {weight.shape[1]} channels, the inputs have {edges[-1]}")
        self.coarse = FoldedConv(weight[:, : edges[1]], bias)
        skips = []
        for (a, b), width in zip(zip(edges[1:], edges[2:]), skip_widths or skip_channels):
            padded = weight.new_zeros(weight.shape[0], width, 1, 1)
            padded[:, : b - a] = weight[:, a:b]
            skips.append(FoldedConv(padded, None))
        self.skips = nn.ModuleList(skips)
        self.block = FoldedSeparableBlock(fuse[1])

    def forward(self, coarse: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        out = F.interpolate(self.coarse(coarse), size=skips[0].shape[-2:], mode="bilinear", align_corners=False)
        last = len(skips) - 1
        for i, (projection, skip) in enumerate(zip(self.skips, skips)):
            out = projection(skip, add=out, relu=i == last)
        return self.block(out)


class CachedEATBlock(EATBlock):
    """An :class:`EATBlock` copy that computes its coordinate grids and query embeddings once per map size.

    They depend only on the size (and, for the embedding, on weights that are frozen here: the block is a
    copy made for inference), so caching them changes nothing but the number of small ops per call, which
    dominates at the 1/32 scale. Moving the module (``.to``) empties the caches.
    """

    def __init__(self, block: EATBlock, mlp_ratio: float) -> None:
        super().__init__(block.dim, block.heads, block.ref_grid, block.interest_points, block.offset_range,
                         mlp_ratio, block.use_schedule)
        self.load_state_dict(block.state_dict())
        self._grids: dict[tuple, torch.Tensor] = {}
        self._queries: dict[tuple, torch.Tensor] = {}

    def coordinate_grid(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        key = (h, w, like.device, like.dtype)
        if key not in self._grids:
            self._grids[key] = super().coordinate_grid(h, w, like)
        return self._grids[key]

    def query_embedding(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        key = (h, w, like.device, like.dtype)
        if key not in self._queries:
            self._queries[key] = super().query_embedding(h, w, like)
        return self._queries[key]

    def _apply(self, fn, recurse=True):  # .to(device/dtype): cached tensors belong to the old one
        self._grids.clear()
        self._queries.clear()
        return super()._apply(fn, recurse)


def _front_end(model: EATIEA) -> FoldedConv:
    """The 2×2 stride-2 convolution giving ``[light/skip bands (12), grey Haar bands (4)]`` from the pixels.

    With the DWT the first 12 outputs are ``haar_dwt(x − 0.5)`` (LL of R, G, B, then the LH, HL, HH bands
    band-major); in the no-DWT ablation they are ``learned_split(x − 0.5)``. The last 4 are
    ``haar_dwt(grey(x))`` (LL, LH, HL, HH).
    """
    weight = torch.zeros(16, 3, 2, 2)
    bias = torch.zeros(16)
    if model.config.use_dwt:
        for band in range(4):
            for channel in range(3):
                weight[band * 3 + channel, channel] = 0.5 * _HAAR_SIGNS[band]
        bias[:12] = -0.5 * weight[:12].sum(dim=(1, 2, 3))  # the −0.5 shift: only LL moves (by −1)
    else:
        split = model.learned_split
        weight[:12] = split.weight.detach()
        bias[:12] = split.bias.detach() - 0.5 * split.weight.detach().sum(dim=(1, 2, 3))
    for band in range(4):
        for channel, grey_weight in enumerate(model.grey_weights.flatten().tolist()):
            weight[12 + band, channel] = grey_weight * 0.5 * _HAAR_SIGNS[band]
    return FoldedConv(weight, bias, stride=2)


class FoldedEATIEA(nn.Module):
    """:class:`EATIEA` in eval mode, refolded for CPU inference (see the module docstring).

    Build it with :func:`fold_for_inference`. Same input and output as ``EATIEA.forward``.
    """

    def __init__(self, model: EATIEA) -> None:
        super().__init__()
        cfg = model.config
        self.config = cfg
        w4, w8, w16, w32 = cfg.widths
        d16, d8, d4, _ = cfg.decoder_widths
        s4, s16 = (cfg.structure_width, cfg.structure_long_width) if cfg.use_structure else (0, 0)
        self.front = _front_end(model)
        self.light_stem = FoldedConvReLU(model.light_stem)
        self.light4 = FoldedSeparableBlock(model.light4)
        self.light8 = nn.Sequential(FoldedConvReLU(model.light8[0]), FoldedSeparableBlock(model.light8[1]))
        self.light16 = nn.Sequential(FoldedConvReLU(model.light16[0]), FoldedSeparableBlock(model.light16[1]))
        self.light32 = nn.Sequential(FoldedConvReLU(model.light32[0]), FoldedSeparableBlock(model.light32[1]))
        self.eat = nn.ModuleList(CachedEATBlock(block, cfg.mlp_ratio) for block in model.eat)
        if cfg.use_structure:
            self.structure_short = nn.Sequential(
                FoldedConvReLU(model.structure_short[0]), FoldedSeparableBlock(model.structure_short[1])
            )
            self.structure_long = nn.Sequential(*(FoldedConvReLU(layer) for layer in model.structure_long))
            self.structure_global = copy.deepcopy(model.structure_global)
        self.fuse16 = FoldedFuse(model.fuse16, w32, [w16] + ([s16] if s16 else []))
        self.fuse8 = FoldedFuse(model.fuse8, d16, [w8])
        self.fuse4 = FoldedFuse(model.fuse4, d8, [w4] + ([s4] if s4 else []))
        # the 1/2 skip is read as all 16 channels of the front end (the 4 grey bands with zero weights)
        self.fuse2 = FoldedFuse(model.fuse2, d4, [12], skip_widths=[16])
        # offset and gain of the four sub-bands from one 1×1 convolution
        self.head = FoldedConv(torch.cat([model.head_offset.weight, model.head_gain.weight]),
                               torch.cat([model.head_offset.bias, model.head_gain.bias]))
        self.register_buffer("inverse_haar", _INVERSE_HAAR.clone())

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        height, width = rgb.shape[-2:]
        pad_h, pad_w = (-height) % MULTIPLE, (-width) % MULTIPLE
        x = rgb.contiguous(memory_format=torch.channels_last)
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        residual = self._forward_padded(x)
        return residual[..., :height, :width]

    def _structure_input(self, front: torch.Tensor) -> torch.Tensor:
        """The 9 colour high bands and the 3 gradient magnitudes of the grey high bands (as in ``EATIEA._split``)."""
        if not self.config.use_dwt:
            return front[:, :12]
        grey_high = front[:, 13:16].contiguous(memory_format=torch.channels_last)  # differences of a slice are slow
        gradient = torch.zeros_like(grey_high, memory_format=torch.channels_last)
        # |horizontal difference| (0 in the last column) + |vertical difference| (0 in the last row)
        torch.sub(grey_high[..., :, 1:], grey_high[..., :, :-1], out=gradient[..., :, :-1]).abs_()
        gradient[..., :-1, :] += (grey_high[..., 1:, :] - grey_high[..., :-1, :]).abs_()
        return torch.cat([front[:, 3:12], gradient], dim=1)

    def _forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        front = self.front(x)  # B×16×H/2×W/2: [light/skip bands (12), grey bands (4)]
        light_in = front[:, :3] if self.config.use_dwt else front[:, :12]

        l4 = self.light4(self.light_stem(light_in))
        l8 = self.light8(l4)
        l16 = self.light16(l8)
        l32 = self.light32(l16)
        for block in self.eat:
            l32 = block(l32)

        skips16, skips4 = [l16], [l4]
        if self.config.use_structure:
            s4 = self.structure_short(self._structure_input(front))
            s16 = self.structure_long(F.avg_pool2d(s4, 4))
            s16 = s16 + self.structure_global(s16.mean(dim=(2, 3), keepdim=True))
            skips16.append(s16)
            skips4.append(s4)

        d16 = self.fuse16(l32, skips16)
        d8 = self.fuse8(d16, [l8])
        d4 = self.fuse4(d8, skips4)
        d2 = self.fuse2(d4, [front])

        offset_gain = _pixels(self.head(d2))  # (B·h·w)×8
        bands = torch.addcmul(offset_gain[:, :4], offset_gain[:, 4:], _pixels(front[:, 12:16]))
        blocks = torch.tanh_(bands @ self.inverse_haar)  # pixels (a, b, c, d) of each 2×2 block
        b, _, h, w = d2.shape
        # (B, h, w, 2 rows, 2 columns) → (B, h, 2, w, 2) → B×1×2h×2w
        return blocks.view(b, h, w, 2, 2).permute(0, 1, 3, 2, 4).reshape(b, 1, 2 * h, 2 * w)


@torch.no_grad()
def fold_for_inference(model: EATIEA) -> FoldedEATIEA:
    """A :class:`FoldedEATIEA` with `model`'s weights, in eval mode, on `model`'s device (float32).

    `model` itself is left as it is (its training mode included). Raises ValueError for a module that is
    not an :class:`EATIEA`.
    """
    if not isinstance(model, EATIEA):
        raise ValueError(f"fold_for_inference needs an EATIEA, got {type(model).__name__}")
    device = next(model.parameters()).device
    folded = FoldedEATIEA(model)  # reads running statistics and weights only; `model` keeps its mode
    return folded.to(device, memory_format=torch.channels_last).eval().requires_grad_(False)


__all__ = ["FoldedEATIEA", "fold_for_inference"]
