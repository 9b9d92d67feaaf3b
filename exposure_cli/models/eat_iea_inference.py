"""EAT-IEA folded for CPU inference: the same maps as :class:`~.eat_iea.EATIEA` in ``eval()``, in fewer passes.

:func:`fold_for_inference` builds a separate module from a trained network in eval mode; the trained
network is not touched (training never sees this module). What changes is only how the same arithmetic is
laid out, so the maps agree with the network's to float rounding (tested: ≤ 1e-5):

* **Front end as one convolution.** ``x − 0.5``, the Haar DWT of the three colour channels and the Haar
  DWT of the grey image are all linear in the pixels of each 2×2 block, so one fixed 2×2 stride-2
  convolution (16 outputs: LL, 9 high bands, grey LL, 3 grey high bands) replaces the slicing, sums, grey
  reduction and concatenations.
* **BatchNorm folded** into the convolution before it (running statistics are constants in eval).
* **1×1 convolutions as matrix products over channels-last pixels** (``addmm``): PyTorch sends a 1×1
  convolution of a small batch on one thread to its slow im2col path, not to oneDNN.
* **No concatenation before the decoder's 1×1 convolutions.** ``conv(cat(up(a), b, c))`` is
  ``up(conv_a(a)) + conv_b(b) + conv_c(c)``: bilinear upsampling and a 1×1 convolution are both linear
  and act on different axes (and the upsampling weights sum to one, so the bias passes through), so the
  coarse input is projected *before* it is upsampled, on a quarter of the pixels, and the skips are
  accumulated into the result in place.
* **Inverse Haar DWT as a 4×4 matrix and a pixel shuffle** of the head's four sub-bands.

The EAT blocks (at 1/32 of the input) are copied unchanged. The module is for float32 on the CPU: the
analyzer keeps the trained module on other devices (its CUDA path runs under autocast).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .eat_iea import _GREY, MULTIPLE, EATIEA, SeparableBlock, SqueezeExcite

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


def _folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A copy of `conv` with `bn` folded into its weight and bias."""
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                       conv.dilation, conv.groups, bias=True)
    weight, bias = _fold_batchnorm(conv.weight, conv.bias, bn)
    folded.weight.copy_(weight)
    folded.bias.copy_(bias)
    return folded


def _pixels(x: torch.Tensor) -> torch.Tensor:
    """A channels-last B×C×H×W tensor as its (B·H·W)×C matrix of pixels (a view, also of channel slices)."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _image(pixels: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B·H·W)×C pixels back to a channels-last B×C×H×W view shaped like `like` (batch and size)."""
    b, _, h, w = like.shape
    return pixels.view(b, h, w, -1).permute(0, 3, 1, 2)


class Pointwise(nn.Module):
    """A 1×1 convolution (with BatchNorm folded in) as a matrix product over channels-last pixels."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        # stored as Cin×Cout so that pixels @ weight_t is the convolution
        self.register_buffer("weight_t", weight.reshape(weight.shape[0], -1).t().contiguous())
        self.register_buffer("bias", None if bias is None else bias.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return _image(_pixels(x) @ self.weight_t, x)
        return _image(torch.addmm(self.bias, _pixels(x), self.weight_t), x)

    def accumulate(self, out: torch.Tensor, x: torch.Tensor) -> None:
        """``out += conv(x)`` in place (`out` channels-last, same batch and size as `x`)."""
        _pixels_view(out).addmm_(_pixels(x), self.weight_t)


def _pixels_view(x: torch.Tensor) -> torch.Tensor:
    """Like :func:`_pixels`, but fails instead of copying (for results written in place)."""
    return x.permute(0, 2, 3, 1).view(-1, x.shape[1])


class FoldedConvReLU(nn.Module):
    """``relu(bn(conv(x)))`` of ``_conv_bn_relu`` as one convolution with a bias and an in-place ReLU."""

    def __init__(self, block: nn.Sequential) -> None:
        super().__init__()
        self.conv = _folded_conv(block[0], block[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x), inplace=True)


class FoldedSqueezeExcite(nn.Module):
    """The channel gate of :class:`SqueezeExcite` (a copy; applied by the caller in one fused pass)."""

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
        self.depthwise = _folded_conv(block.depthwise, block.bn1)
        self.pointwise = Pointwise(*_fold_batchnorm(block.pointwise.weight, None, block.bn2))
        self.gate = FoldedSqueezeExcite(block.attention) if isinstance(block.attention, SqueezeExcite) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pointwise(F.relu(self.depthwise(x), inplace=True))
        if self.gate is None:
            y += x
        else:
            y = torch.addcmul(x, y, self.gate(y))
        return F.relu(y, inplace=True)


class FoldedFuse(nn.Module):
    """A decoder stage ``block(relu(bn(conv1x1(cat([up(coarse), *skips])))))`` without the concatenation.

    The coarse input is projected by its share of the 1×1 weights (and the bias) before the bilinear
    upsampling; each skip's share is then added into the upsampled result in place.
    """

    def __init__(self, fuse: nn.Sequential, coarse_channels: int, skip_channels: list[int]) -> None:
        super().__init__()
        weight, bias = _fold_batchnorm(fuse[0][0].weight, None, fuse[0][1])
        weight = weight.reshape(weight.shape[0], -1)
        edges = [0, coarse_channels]
        for channels in skip_channels:
            edges.append(edges[-1] + channels)
        if edges[-1] != weight.shape[1]:
            raise ValueError(f"fuse stage takes {weight.shape[1]} channels, the inputs have {edges[-1]}")
        self.coarse = Pointwise(weight[:, : edges[1]], bias)
        self.skips = nn.ModuleList(Pointwise(weight[:, a:b], None) for a, b in zip(edges[1:], edges[2:]))
        self.block = FoldedSeparableBlock(fuse[1])

    def forward(self, coarse: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        size = skips[0].shape[-2:]
        out = F.interpolate(self.coarse(coarse), size=size, mode="bilinear", align_corners=False)
        out = out.contiguous(memory_format=torch.channels_last)
        for projection, skip in zip(self.skips, skips):
            projection.accumulate(out, skip)
        return self.block(F.relu(out, inplace=True))


def _front_end(model: EATIEA) -> nn.Conv2d:
    """The 2×2 stride-2 convolution giving ``[light/skip bands (12), grey Haar bands (4)]`` from the pixels.

    With the DWT the first 12 outputs are ``haar_dwt(x − 0.5)`` (LL of R, G, B, then the LH, HL, HH bands
    band-major); in the no-DWT ablation they are ``learned_split(x − 0.5)``. The last 4 are
    ``haar_dwt(grey(x))`` (LL, LH, HL, HH).
    """
    front = nn.Conv2d(3, 16, 2, 2, bias=True)
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
        for channel, grey_weight in enumerate(_GREY):
            weight[12 + band, channel] = grey_weight * 0.5 * _HAAR_SIGNS[band]
    front.weight.copy_(weight)
    front.bias.copy_(bias)
    return front


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
        self.eat = copy.deepcopy(model.eat)
        if cfg.use_structure:
            self.structure_short = nn.Sequential(
                FoldedConvReLU(model.structure_short[0]), FoldedSeparableBlock(model.structure_short[1])
            )
            self.structure_long = nn.Sequential(*(FoldedConvReLU(layer) for layer in model.structure_long))
            self.structure_global = copy.deepcopy(model.structure_global)
        self.fuse16 = FoldedFuse(model.fuse16, w32, [w16] + ([s16] if s16 else []))
        self.fuse8 = FoldedFuse(model.fuse8, d16, [w8])
        self.fuse4 = FoldedFuse(model.fuse4, d8, [w4] + ([s4] if s4 else []))
        self.fuse2 = FoldedFuse(model.fuse2, d4, [12])
        # offset and gain of the four sub-bands from one matrix product
        self.head = Pointwise(torch.cat([model.head_offset.weight, model.head_gain.weight]),
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
        grey_high = front[:, 13:16]
        gradient = torch.zeros_like(grey_high, memory_format=torch.channels_last)
        # |horizontal difference| (0 in the last column) + |vertical difference| (0 in the last row)
        torch.sub(grey_high[..., :, 1:], grey_high[..., :, :-1], out=gradient[..., :, :-1]).abs_()
        gradient[..., :-1, :] += (grey_high[..., 1:, :] - grey_high[..., :-1, :]).abs_()
        return torch.cat([front[:, 3:12], gradient], dim=1)

    def _forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        front = self.front(x)  # B×16×H/2×W/2: [light/skip bands (12), grey bands (4)]
        skip2 = front[:, :12]
        light_in = front[:, :3] if self.config.use_dwt else skip2

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
        d2 = self.fuse2(d4, [skip2])

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
