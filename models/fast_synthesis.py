"""A faster inference path for a StyleGAN2 synthesis network: same pixels (up to float rounding), less work.

`SynthesisNetwork.forward` serves training and inference alike and redoes weight-only work on every call.
`FastSynthesis` renders one generator for display and keeps what does not change between frames:
- weight-side quantities are computed once: the compute-dtype copies of the weights and the squared-weight sums
  that demodulation needs (rebuilt if the generator's parameters change in place);
- each modulated convolution takes the cheaper of two exact forms at the frame's batch size: per-sample weights
  with the style, demodulation and activation gain folded in (large activations, small weights), or scaled
  activations against the cached weights (small activations, large weights);
- activations stay in one dtype and layout (bf16 or fp32, channels-last on CPU) from the first block to the last;
- the outputs of each block are kept for the last w+ rendered, so a frame whose latents differ only from layer k
  on (a direction on fine layers, a preview refined into the full image) starts at the first block that reads k;
- `cancel` is polled between blocks, so a render that has gone stale stops early.
`compiled` makes a twin whose blocks run as inductor-compiled code (torch.compile): elementwise work fused into
fewer passes over the activations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models import ops
from models.stylegan2 import NoiseMode, SynthesisBlock, SynthesisLayer, SynthesisNetwork, ToRGBLayer

PER_SAMPLE_WEIGHT_COST = 16
# Each block is one compiled graph per noise variant (noise or none): 2 × 9 at 1024², more than dynamo's default
# of 8 graphs per function, plus the graphs of the models opened before in the same process.
COMPILED_GRAPHS_LIMIT = 256
PACKED_CONV = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
# oneDNN packs bf16 weights only on CPUs with AVX-512 (BW, VL, DQ) or AVX-NE-CONVERT; elsewhere (an AVX2-only
# CPU asked for bf16) the packing raises, and bf16 convolutions take torch's ordinary path.
PACKED_BF16 = PACKED_CONV and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def _layout(x: torch.Tensor) -> torch.memory_format:
    channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last else torch.contiguous_format


class RenderCancelled(Exception):
    """Raised by `FastSynthesis.__call__` when its `cancel` callback asked it to stop."""


@dataclass
class _Modulated:
    """The per-frame-invariant parts of one modulated convolution."""

    weight: torch.Tensor  # fp32 [O, I, k, k] (the parameter itself when it is fp32)
    wsq: torch.Tensor | None  # fp32 [O, I]: Σ_k w², for demodulation
    affine_w: torch.Tensor  # fp32 [I, w_dim], gains folded in
    affine_b: torch.Tensor  # fp32 [I]
    # Up-convolutions: the fp32 kernel of each output phase (a, b), flipped and sliced once here, not per frame.
    phases: list[tuple[int, int, torch.Tensor]]
    # Compute-dtype kernels per (phase, input shape): prepacked for oneDNN on CPU, where re-laying out a large
    # weight on every call costs more than the convolution itself at low resolutions.
    packed: dict[tuple, torch.Tensor]


@dataclass
class _Cached:
    key: tuple  # noise settings, dtype, batch
    ws: torch.Tensor  # the w+ of the frame these outputs belong to
    outputs: list[tuple[torch.Tensor, torch.Tensor]]  # (x, img) after each block


class FastSynthesis:
    """Renders `synthesis` (not owned; left unchanged) under inference mode in `dtype` (None: fp32, or bf16).

    Use one instance per generator from one thread at a time (the prefix cache is its state).
    """

    def __init__(self, synthesis: SynthesisNetwork, dtype: torch.dtype | None = None):
        if dtype not in (None, torch.float32, torch.bfloat16):
            raise ValueError(f"the fast path computes in fp32 or bf16, not {dtype}")
        self.synthesis = synthesis
        self.dtype = dtype or torch.float32
        self.last_reused_blocks = 0  # how many leading blocks the last call took from the prefix cache
        self._versions: tuple[int, ...] | None = None
        self._layers: dict[int, _Modulated] = {}
        self._cache: _Cached | None = None

    def compiled(self, ws: torch.Tensor) -> FastSynthesis:
        """A twin of this display path whose blocks run as inductor-compiled code, compiled on the calling thread
        for batch 1 with and without noise by rendering `ws` [1, num_ws, w_dim] (any values); previews stop at a
        block and reuse its graphs. The twin never compiles again: a frame its graphs were not compiled for
        (another batch size, weights changed in place) runs its blocks eagerly. Raises what torch.compile raises
        where it cannot compile (no C++ compiler, an operator inductor does not support)."""
        import torch._dynamo  # here: importing it takes seconds, and minutes in the packaged app on a busy CPU

        twin = FastSynthesis(self.synthesis, self.dtype)
        twin(ws, remember=False)  # eagerly first: the weights are prepared and prepacked outside the graphs
        eager_block = twin._block
        with torch._dynamo.config.patch(recompile_limit=COMPILED_GRAPHS_LIMIT):
            twin._block = torch.compile(eager_block, dynamic=False)
            for noise_mode in ("const", "none"):
                twin(ws, noise_mode=noise_mode, remember=False)
        twin._block = torch._dynamo.run(eager_block)  # the graphs compiled above, or eager: never a compile
        return twin

    def forget_frame(self) -> None:
        """Drop the cached layers of the last frame: the network's constant noise maps were swapped, which no
        version counter sees (the maps are replaced, not written into)."""
        self._cache = None

    # --- weight-side preparation ------------------------------------------------------------------------

    def _parameter_versions(self) -> tuple[int, ...]:
        try:
            return tuple(t._version for t in self.synthesis.state_dict(keep_vars=True).values())
        except RuntimeError:  # inference tensors keep no version counter; nothing can change them in place
            return ()

    def _prepare(self) -> None:
        versions = self._parameter_versions()
        if versions == self._versions and self._layers:
            return
        self._layers.clear()
        self._cache = None
        with torch.inference_mode():
            for module in self.synthesis.modules():
                if isinstance(module, (SynthesisLayer, ToRGBLayer)):
                    self._layers[id(module)] = self._modulated(module)
        self._versions = versions

    def _modulated(self, layer: SynthesisLayer | ToRGBLayer) -> _Modulated:
        weight = layer.weight.detach().float()
        affine = layer.affine
        gain = getattr(layer, "weight_gain", 1.0)  # toRGB scales its styles
        affine_w = affine.weight.detach().float() * (affine.weight_gain * gain)
        affine_b = affine.bias.detach().float() * (affine.bias_gain * gain)
        wsq = weight.square().sum(dim=[2, 3]) if isinstance(layer, SynthesisLayer) else None
        phases = []
        if getattr(layer, "up", 1) > 1:
            stride, (kh, kw) = layer.up, weight.shape[2:]
            flipped = weight.flip([2, 3])
            for a in range(stride):
                for b in range(stride):  # as ops.transposed_conv2d slices its flipped weight
                    k = flipped[:, :, (kh - 1 - a) % stride :: stride, (kw - 1 - b) % stride :: stride]
                    phases.append((a, b, k.contiguous()))
        return _Modulated(weight, wsq, affine_w, affine_b, phases, {})

    @staticmethod
    def _styles(m: _Modulated, w: torch.Tensor) -> torch.Tensor:
        return torch.addmm(m.affine_b, w, m.affine_w.t())  # fp32: a matrix-vector product is cheaper in fp32

    # --- layers -----------------------------------------------------------------------------------------

    def _layer(self, layer: SynthesisLayer, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None):
        m = self._layers[id(layer)]
        n, in_c, h, w_ = x.shape
        out_c = m.weight.shape[0]
        gain = ops.LRELU_GAIN  # leaky ReLU commutes with a positive gain: it is folded into what comes before it
        styles = self._styles(m, w)  # [N, I]
        dcoefs = (styles.square() @ m.wsq.t() + 1e-8).rsqrt()  # [N, O]
        activations = in_c * h * w_ + out_c * h * w_ * layer.up**2
        # Scaling a weight (and laying out the fresh weight for the convolution) costs about 16× more per
        # element than a pass over the activations here, so per-sample weights pay only for small weights.
        bias = layer.bias.detach().float() * gain
        if n == 1 and m.weight.numel() * PER_SAMPLE_WEIGHT_COST <= activations:
            scale = (dcoefs[0] * gain)[:, None, None, None] * styles[0][None, :, None, None]
            y = self._conv(layer, m, x, lambda k: (k * scale).to(self.dtype), bias.to(self.dtype), packed=False)
        else:
            x = x * styles.to(self.dtype)[:, :, None, None]
            y = self._conv(layer, m, x, lambda k: k.to(self.dtype), None, packed=True)
            y = y.mul_((dcoefs * gain).to(self.dtype)[:, :, None, None])
            y = y.add_(bias.to(self.dtype)[None, :, None, None])
        if noise is not None:
            y = y.add_((noise * gain).to(self.dtype))
        y = F.leaky_relu_(y, 0.2)
        if layer.conv_clamp is not None:
            y = y.clamp_(-layer.conv_clamp, layer.conv_clamp)
        return y

    def _conv(self, layer: SynthesisLayer, m: _Modulated, x: torch.Tensor, kernel, bias, packed: bool):
        """The layer's convolution (with its up-sampling and blur) of x with `kernel(fp32 weight)`, plus `bias`."""
        if layer.up == 1:
            if bias is not None:  # the convolution adds it in its own pass over the output
                return F.conv2d(x, kernel(m.weight), bias, padding=layer.padding)
            return self._conv2d(m, 0, x, m.weight, kernel, layer.padding, packed)
        # ops.transposed_conv2d with the phases prepared, then ops.conv2d_resample's blur.
        stride, (kh, kw) = layer.up, m.weight.shape[2:]
        n, _, h, w_ = x.shape
        out = None
        for index, (a, b, k) in enumerate(m.phases):
            phase = self._conv2d(m, index, x, k, kernel, (k.shape[2] - 1, k.shape[3] - 1), packed)
            if out is None:
                size = [n, phase.shape[1], (h - 1) * stride + kh, (w_ - 1) * stride + kw]
                out = torch.empty(size, dtype=phase.dtype, device=phase.device, memory_format=_layout(phase))
            out[:, :, a::stride, b::stride] = phase
        f, p = layer.resample_filter, layer.padding
        fh, fw = f.shape
        px0, px1 = p + (fw + stride - 1) // 2 - (kw - 1), p + (fw - stride) // 2 - (kw - stride)
        py0, py1 = p + (fh + stride - 1) // 2 - (kh - 1), p + (fh - stride) // 2 - (kh - stride)
        if px0 == px1 >= 0 and py0 == py1 >= 0:  # the blur as one depthwise convolution that adds the bias
            blur = (f * stride**2).flip([0, 1]).to(out.dtype).expand(out.shape[1], 1, fh, fw).contiguous()
            return F.conv2d(out, blur, bias, padding=(py0, px0), groups=out.shape[1])
        out = ops.upfirdn2d(out, f, padding=(px0, px1, py0, py1), gain=stride**2)
        return out if bias is None else out.add_(bias[None, :, None, None])

    @staticmethod
    def _conv2d(m: _Modulated, index: int, x: torch.Tensor, k: torch.Tensor, kernel, padding, packed: bool):
        padding = list(padding) if isinstance(padding, tuple) else [padding, padding]
        if not (packed and x.device.type == "cpu" and (PACKED_BF16 if x.dtype == torch.bfloat16 else PACKED_CONV)):
            return F.conv2d(x, kernel(k), padding=padding)
        key = (index, tuple(x.shape), x.dtype)
        weight = m.packed.get(key)
        if weight is None:
            weight = torch._C._nn.mkldnn_reorder_conv2d_weight(
                kernel(k).to_mkldnn(), padding, [1, 1], [1, 1], 1, list(x.shape)
            )
            m.packed[key] = weight
        return torch.ops.mkldnn._convolution_pointwise(x, weight, None, padding, [1, 1], [1, 1], 1, "none", [], "")

    def _torgb(self, layer: ToRGBLayer, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """fp32 RGB [N, C, H, W] of x (any layout): a 1×1 modulated convolution, without demodulation."""
        m = self._layers[id(layer)]
        n, _, h, w_ = x.shape
        weight = (m.weight[None, :, :, 0, 0] * self._styles(m, w)[:, None, :]).to(self.dtype)  # [N, O, I]
        bias = layer.bias.detach().float()
        if n == 1:  # oneDNN's 1×1 convolution: twice as fast as a matmul with three columns here
            y = F.conv2d(x, weight[0, :, :, None, None]).float().add_(bias[None, :, None, None])
        else:  # pixels as rows, one matmul per sample
            rows = torch.matmul(x.permute(0, 2, 3, 1).reshape(n, h * w_, -1), weight.transpose(1, 2))  # [N, HW, O]
            y = rows.float().add_(bias).reshape(n, h, w_, -1).permute(0, 3, 1, 2)
        if layer.conv_clamp is not None:
            y = y.clamp_(-layer.conv_clamp, layer.conv_clamp)
        return y

    def _block(self, block: SynthesisBlock, x, img, ws: torch.Tensor, noises, memory_format):
        w_iter = iter(ws.unbind(dim=1))
        if block.in_channels == 0:
            x = block.const.detach().to(self.dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = x.contiguous(memory_format=memory_format)
        else:
            x = self._layer(block.conv0, x, next(w_iter), noises.pop(0))
        x = self._layer(block.conv1, x, next(w_iter), noises.pop(0))
        y = self._torgb(block.torgb, x, next(w_iter))
        if img is not None:
            y = y.add_(ops.upsample2d(img, block.resample_filter))
        return x, y

    # --- frames -----------------------------------------------------------------------------------------

    def _noises(self, n, device, noise_mode, noise_scale, noise_seed, blocks) -> list[torch.Tensor | None]:
        """Per layer, in the order the reference network draws random noise, the noise it adds (before gains)."""
        generator = None
        if noise_mode == "random":
            generator = torch.Generator(device=device).manual_seed(noise_seed or 0)
        out: list[torch.Tensor | None] = []
        for block in blocks:
            for layer in (getattr(block, "conv0", None), block.conv1):
                if layer is None:
                    continue
                if not layer.use_noise or noise_mode == "none" or noise_scale == 0:
                    out.append(None)
                    continue
                strength = layer.noise_strength.detach().float() * noise_scale
                if noise_mode == "random":
                    rnd = torch.randn([n, 1, layer.resolution, layer.resolution], device=device, generator=generator)
                    out.append(rnd * strength)
                else:
                    out.append(layer.noise_const.detach().float() * strength)
        return out

    def __call__(
        self,
        ws: torch.Tensor,
        noise_mode: NoiseMode = "const",
        noise_scale: float = 1.0,
        noise_seed: int | None = None,
        stop_at: int | None = None,
        cancel: Callable[[], bool] | None = None,
        remember: bool = True,
    ) -> torch.Tensor:
        """ws [N, num_ws, w_dim] → fp32 images [N, C, R, R], as `synthesis(ws, ...)` would render them; random
        noise is drawn from a generator seeded with `noise_seed`. Raises RenderCancelled when `cancel()` is true
        between two blocks. `remember=False` leaves the prefix cache to the frames it holds (for one-off images
        such as thumbnails, which would otherwise evict the frame being edited)."""
        net = self.synthesis
        if ws.ndim != 3 or tuple(ws.shape[1:]) != (net.num_ws, net.w_dim):
            raise ValueError(f"expected w+ [N, {net.num_ws}, {net.w_dim}], got {tuple(ws.shape)}")
        if stop_at is not None and stop_at not in net.block_resolutions:
            raise ValueError(f"stop_at must be one of {net.block_resolutions}, not {stop_at}")
        with torch.inference_mode():
            self._prepare()
            slices = [(getattr(net, f"b{res}"), span) for res, span in net.w_slices().items()]
            if stop_at is not None:
                slices = slices[: net.block_resolutions.index(stop_at) + 1]
            blocks = [block for block, _ in slices]
            ws = ws.float()
            key = (noise_mode, float(noise_scale), noise_seed if noise_mode == "random" else None, ws.shape[0])
            reuse = self._reusable_blocks(key, ws, [span for _, span in slices])
            self.last_reused_blocks = reuse
            memory_format = torch.channels_last if ws.device.type == "cpu" else torch.contiguous_format
            noises = self._noises(ws.shape[0], ws.device, noise_mode, noise_scale, noise_seed, blocks)
            del noises[: sum(block.num_conv for block in blocks[:reuse])]  # drawn all the same, to keep the order
            outputs = self._cache.outputs[:reuse] if reuse else []
            x, img = outputs[-1] if outputs else (None, None)
            for block, (start, count) in slices[reuse:]:
                if cancel is not None and cancel():
                    raise RenderCancelled()
                x, img = self._block(block, x, img, ws.narrow(1, start, count), noises, memory_format)
                outputs.append((x, img))
            cache = self._cache
            longer = cache and cache.key == key and len(cache.outputs) >= len(outputs) and torch.equal(cache.ws, ws)
            if remember and not longer:  # (a preview of the cached frame keeps the cache's longer list)
                self._cache = _Cached(key, ws, outputs)
            return img.clone(memory_format=torch.contiguous_format)  # the cached img stays the cache's own

    def _reusable_blocks(self, key: tuple, ws: torch.Tensor, slices: list[tuple[int, int]]) -> int:
        """How many leading blocks of this frame read the same w+ rows (and noise) as the cached frame did."""
        cache = self._cache
        if cache is None or cache.key != key or cache.ws.device != ws.device:
            return 0
        differs = (cache.ws != ws).any(dim=2).any(dim=0).nonzero()
        first_change = int(differs[0]) if len(differs) else ws.shape[1]
        reuse = 0
        for start, count in slices[: len(cache.outputs)]:
            if start + count > first_change:
                break
            reuse += 1
        return reuse
