"""A direct, slow, obviously-correct StyleGAN3 forward pass over a state_dict, written from the published
description of NVIDIA's reference ops (`_upfirdn2d_ref`, `_filtered_lrelu_ref`, `modulated_conv2d`,
`SynthesisInput.forward`), and the writer of StyleGAN3 network pickles in NVIDIA's structure.

Nothing here is shared with `models.stylegan3` or `models.alias_free`: the layer geometry is recomputed from
the kwargs with the published formulas, upsampling really inserts zeros, and every filter is applied as one
2-D convolution (separable filters as their outer product).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.stylegan3 import Generator
from tests.models import pickle_fixtures as fx

# --- ops


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up: int = 1, down: int = 1, padding=(0, 0, 0, 0), gain=1.0):
    """Zero-insert, pad (x0, x1, y0, y1; negative crops), convolve (a true convolution), decimate.

    In float32: torch's float64 convolutions take minutes here, and float32 rounding is far below the tolerance.
    """
    if f is None:
        f = torch.ones(1, 1)
    if f.ndim == 1:
        f = torch.outer(f, f)
    f = f.float() * gain
    n, c, h, w = x.shape
    x = x.float()
    if up > 1:
        z = x.new_zeros([n, c, h * up, w * up])
        z[:, :, ::up, ::up] = x
        x = z
    px0, px1, py0, py1 = padding
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    kernel = f.flip([0, 1])[None, None].repeat(c, 1, 1, 1)
    x = F.conv2d(x, kernel, groups=c)
    return x[:, :, ::down, ::down].double()


def filtered_lrelu(x, fu, fd, b, up, down, padding, gain, slope, clamp):
    x = x.double() + b.double()[None, :, None, None]
    x = upfirdn2d(x, fu, up=up, padding=padding, gain=up**2)
    x = torch.where(x >= 0, x, x * slope) * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return upfirdn2d(x, fd, down=down)


def modulated_conv2d(x, weight, styles, demodulate, padding, input_gain):
    """One sample at a time, with NVIDIA's normalisations (the styles' RMS taken over the whole batch)."""
    weight, styles = weight.double(), styles.double()
    if demodulate:
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    out = []
    for i in range(x.shape[0]):
        w = weight * styles[i][None, :, None, None]
        if demodulate:
            w = w * (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).rsqrt()
        w = w * float(input_gain)
        out.append(F.conv2d(x[i : i + 1].double(), w, padding=padding))
    return torch.cat(out)


def dense(sd: dict, prefix: str, x: torch.Tensor, lr_multiplier: float = 1.0, act: bool = False):
    w, b = sd[f"{prefix}.weight"].double(), sd[f"{prefix}.bias"].double()
    y = x @ (w * (lr_multiplier / math.sqrt(w.shape[1]))).t() + b * lr_multiplier
    return F.leaky_relu(y, 0.2) * math.sqrt(2) if act else y


# --- the network


def geometry(kwargs: dict) -> list[dict]:
    """Per layer: sizes, channels, sampling rates, up/down factors and padding (NVIDIA's formulas)."""
    res = kwargs["img_resolution"]
    num_layers, num_critical = kwargs.get("num_layers", 14), kwargs.get("num_critical", 2)
    cutoff0, stop0 = kwargs.get("first_cutoff", 2), kwargs.get("first_stopband", 2**2.1)
    cut_n = res / 2
    stop_n = cut_n * kwargs.get("last_stopband_rel", 2**0.3)
    e = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = cutoff0 * (cut_n / cutoff0) ** e
    stops = stop0 * (stop_n / stop0) ** e
    rates = np.exp2(np.ceil(np.log2(np.minimum(stops * 2, res))))
    sizes = rates + kwargs.get("margin_size", 10) * 2
    sizes[-2:] = res
    chans = np.rint(np.minimum((kwargs.get("channel_base", 32768) / 2) / cutoffs, kwargs.get("channel_max", 512)))
    chans[-1] = kwargs["img_channels"]
    layers = []
    for i in range(num_layers + 1):
        p = max(i - 1, 0)
        torgb = i == num_layers
        tmp = max(rates[p], rates[i]) * (1 if torgb else 2)
        up, down = int(tmp / rates[p]), int(tmp / rates[i])
        k = 1 if torgb else kwargs.get("conv_kernel", 3)
        up_taps = 6 * up if up > 1 and not torgb else 1
        down_taps = 6 * down if down > 1 and not torgb else 1
        total = (sizes[i] - 1) * down + 1 - (sizes[p] + k - 1) * up + up_taps + down_taps - 2
        lo = (total + up) // 2
        layers.append(
            dict(
                name=f"L{i}_{int(sizes[i])}_{int(chans[i])}", torgb=torgb, up=up, down=down, k=k,
                padding=(int(lo), int(total - lo), int(lo), int(total - lo)),
                rate0=rates[0], size0=int(sizes[0]), bandwidth=cutoffs[0],
            )
        )
    return layers


def mapping(sd: dict, kwargs: dict, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    def normalize(v):
        return v * (v.square().mean(1, keepdim=True) + 1e-8).rsqrt()

    x = normalize(z.double())
    if kwargs["c_dim"]:
        x = torch.cat([x, normalize(dense(sd, "mapping.embed", c.double()))], dim=1)
    lr = kwargs.get("mapping_kwargs", {}).get("lr_multiplier", 0.01)
    i = 0
    while f"mapping.fc{i}.weight" in sd:
        x = dense(sd, f"mapping.fc{i}", x, lr, act=True)
        i += 1
    return x


def fourier_input(sd: dict, layer0: dict, w: torch.Tensor, transform: torch.Tensor | None) -> torch.Tensor:
    p = "synthesis.input"
    n = w.shape[0]
    transform = (sd[f"{p}.transform"] if transform is None else transform).double()
    t = dense(sd, f"{p}.affine", w)
    t = t / t[:, :2].norm(dim=1, keepdim=True)
    m_r = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
    m_r[:, 0, 0], m_r[:, 0, 1], m_r[:, 1, 0], m_r[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
    m_t = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
    m_t[:, 0, 2], m_t[:, 1, 2] = -t[:, 2], -t[:, 3]
    m = m_r @ m_t @ transform[None]
    freqs, phases = sd[f"{p}.freqs"].double()[None], sd[f"{p}.phases"].double()[None]
    phases = phases + (freqs @ m[:, :2, 2:]).squeeze(2)
    freqs = freqs @ m[:, :2, :2]
    rate, band, size = layer0["rate0"], layer0["bandwidth"], layer0["size0"]
    amp = (1 - (freqs.norm(dim=2) - band) / (rate / 2 - band)).clamp(0, 1)
    # Pixel centres of a size×size grid spanning ±size/(2·rate), as affine_grid(align_corners=False) puts them.
    coords = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1
    coords = coords * 0.5 * size / rate
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")
    out = torch.empty(n, freqs.shape[1], size, size, dtype=torch.float64)
    for b in range(n):
        for ch in range(freqs.shape[1]):
            arg = gx * freqs[b, ch, 0] + gy * freqs[b, ch, 1] + phases[b, ch]
            out[b, ch] = torch.sin(arg * 2 * math.pi) * amp[b, ch]
    weight = sd[f"{p}.weight"].double() / math.sqrt(freqs.shape[1])
    return torch.einsum("oc,nchw->nohw", weight, out)


def synthesis(sd: dict, kwargs: dict, ws: torch.Tensor, transform: torch.Tensor | None = None) -> torch.Tensor:
    layers = geometry(kwargs)
    x = fourier_input(sd, layers[0], ws[:, 0].double(), transform)
    clamp = kwargs.get("conv_clamp", 256)
    for i, g in enumerate(layers):
        p = f"synthesis.{g['name']}"
        styles = dense(sd, f"{p}.affine", ws[:, i + 1].double())
        in_c = sd[f"{p}.weight"].shape[1]
        if g["torgb"]:
            styles = styles / math.sqrt(in_c * g["k"] ** 2)
        gain_in = sd[f"{p}.magnitude_ema"].double().rsqrt()
        x = modulated_conv2d(x, sd[f"{p}.weight"], styles, not g["torgb"], g["k"] - 1, gain_in)
        x = filtered_lrelu(
            x, sd.get(f"{p}.up_filter"), sd.get(f"{p}.down_filter"), sd[f"{p}.bias"], g["up"], g["down"],
            g["padding"], 1 if g["torgb"] else math.sqrt(2), 1 if g["torgb"] else 0.2, clamp,
        )
    return x * kwargs.get("output_scale", 0.25)


def generate(sd: dict, kwargs: dict, z: torch.Tensor, c: torch.Tensor | None = None, psi: float = 1.0,
             transform: torch.Tensor | None = None) -> torch.Tensor:
    num_ws = kwargs.get("num_layers", 14) + 2
    w = mapping(sd, kwargs, z, c)
    if psi != 1:
        w = sd["mapping.w_avg"].double().lerp(w, psi)
    return synthesis(sd, kwargs, w[:, None].repeat(1, num_ws, 1), transform)


# --- NVIDIA StyleGAN3 pickles


def make_sg3(c_dim=0, conv_kernel=3, radial=False, seed=0, resolution=32, shown: torch.Tensor | None = None):
    """A tiny random StyleGAN3 (R config with `radial` and conv_kernel 1) whose outputs span about [-1, 1];
    with `shown` (z [N, 16]) those images span it, with contrast (random networks vary little within one)."""
    kwargs = {}  # NVIDIA's train.py records these only for the R config
    if conv_kernel != 3:
        kwargs["conv_kernel"] = conv_kernel
    if radial:
        kwargs["use_radial_filters"] = True
    with torch.random.fork_rng(devices=[]):  # the initial weights and Fourier features too depend on `seed`
        torch.manual_seed(seed)
        G = Generator(
            z_dim=16, c_dim=c_dim, w_dim=16, img_resolution=resolution, img_channels=3,
            mapping_kwargs=dict(num_layers=2), channel_base=128, channel_max=8, magnitude_ema_beta=0.999,
            conv_clamp=256, **kwargs,
        )
    randomize(G, seed)
    with torch.no_grad():  # spread the outputs over [-1, 1] as a trained network's, so the tolerance means something
        torgb = getattr(G.synthesis, G.synthesis.layer_names[-1])
        torgb.bias.zero_()
        y = G(*latents(G)) if shown is None else G(shown)  # the latents the tests render
        mean = y.mean(dim=[0, 2, 3])
        spread = (y - mean[None, :, None, None]).abs().max()
        torgb.weight.div_(spread)
        torgb.bias.copy_(-mean / spread / G.synthesis.output_scale)
    return G


def latents(G, n=2, seed=3):
    z = torch.randn([n, G.z_dim], generator=torch.Generator().manual_seed(seed))
    c = F.one_hot(torch.arange(n) % G.c_dim, G.c_dim).float() if G.c_dim else None
    return z, c


def sg3_pickle(tmp_path, marker, G_ema, G=None, D=None, name="sg3.pkl", protocol=4):
    src = fx.module_src(marker)
    data = {"G_ema": record(G_ema, src, sg3_kwargs(G_ema))}
    if G is not None:
        data["G"] = record(G, src, sg3_kwargs(G))
    if D is not None:
        d_kwargs = fx.discriminator_kwargs(D, "stylegan3", 256)
        d_kwargs["img_resolution"] = D.img_resolution
        data["D"] = fx.record(D, src, d_kwargs)
        data["training_set_kwargs"] = fx.EasyDict(path="/data/faces-32.zip", resolution=32, xflip=True)
    return fx.write_pickle(tmp_path / name, data, protocol)




def randomize(G: nn.Module, seed: int) -> nn.Module:
    """Perturb every weight (not the filters): a mis-mapped tensor then shows in the pixels. Input magnitudes
    stay positive, and the learned input transform moves off the identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*G.named_parameters(), *G.named_buffers()]:
            if name.endswith(("up_filter", "down_filter", ".transform", "freqs", "phases")):
                continue
            if name.endswith("magnitude_ema"):
                t.copy_(torch.rand([], generator=gen) * 1.5 + 0.25)
            else:
                t.add_(torch.randn(t.shape, generator=gen) * 0.2)
    return G.eval()


def numpy_attributes(module: nn.Module) -> dict[str, Any]:
    """The numpy values NVIDIA's modules keep as attributes (sizes, sampling rates), pickled as numpy."""
    out = {}
    for key, value in vars(module).items():
        if isinstance(value, np.ndarray):
            out[key] = np.array(value)
        elif isinstance(value, np.generic):
            out[key] = value
    return out


def record(module: nn.Module, src: str, init_kwargs: dict | None = None) -> fx.Persistent:
    """`fx.record` with the numpy attributes every StyleGAN3 module carries."""
    rec = fx.record(module, src, init_kwargs, extra=numpy_attributes(module))
    modules = rec.meta["state"]["_modules"]
    for name, child in module._modules.items():
        modules[name] = record(child, src)
    return rec


def sg3_kwargs(G: nn.Module) -> fx.EasyDict:
    """`_init_kwargs` as NVIDIA's train.py records them for --cfg=stylegan3-t / stylegan3-r."""
    keep = ("channel_base", "channel_max", "magnitude_ema_beta", "num_fp16_res", "conv_clamp", "conv_kernel",
            "use_radial_filters")
    k = G.init_kwargs
    return fx.EasyDict(
        z_dim=k["z_dim"], w_dim=k["w_dim"],
        mapping_kwargs=fx.EasyDict(k["mapping_kwargs"]),
        **{key: k[key] for key in keep if key in k},
        c_dim=k["c_dim"], img_resolution=k["img_resolution"], img_channels=k["img_channels"],
    )
