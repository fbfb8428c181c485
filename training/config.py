"""The training configuration: one typed, validated record, dumped as JSON into the run folder."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A bad option, with a message that names it and says what would be valid."""


# Fine-tuning presets: lower learning rates and faster-reacting ADA for a pretrained start.
PRESETS: dict[str, dict[str, Any]] = {
    "scratch": {},
    "finetune": {"g_lr": 0.002, "d_lr": 0.002, "ada_kimg": 100, "ema_rampup": None},
    "finetune-gentle": {"g_lr": 0.001, "d_lr": 0.001, "ada_kimg": 100, "ema_rampup": None, "freeze_d": 2},
    # Very few images: gentle, and G's mapping network frozen too, so the base's latent space keeps its layout
    # while the synthesis layers adapt (less for D to memorise, less for G to collapse onto). A heuristic.
    "finetune-few": {
        "g_lr": 0.001,
        "d_lr": 0.001,
        "ada_kimg": 100,
        "ema_rampup": None,
        "freeze_d": 2,
        "freeze_mapping": True,
    },
    # A projected discriminator (training/projected.py) with DiffAugment and the hinge loss, no R1 nor
    # path-length regularisation, and an EMA of G that grows with the run (below). D's rate is
    # the paper's: on Noto (benchmarks/quality.py) it was as good as 0.002 after 6 CPU-minutes, better early.
    # G's: at 0.0005 C2ST fell 7 points in 30 CPU-minutes on Noto, where at 0.002 it had not moved (one run each).
    # Batch norms in D's heads, as the paper's: on Noto, two seeds side by side for 24 CPU-minutes, FD-EffNet
    # 4-7 points lower at 9 of 10 marks and no drift back up; C2ST and speed unchanged.
    # G's EMA: a half-life of 0.1 x the kimg trained so far, up to 10 kimg (the constant 1 kimg it replaced is
    # reached at 10 kimg), so a quick fine-tune shows and a long run is smoothed: in the bundled model's run,
    # going from 1 to 10 kimg at 181 kimg took FD-EffNet on Fluent from 68-72 to 64-65; on Noto in 30
    # CPU-minutes both measured alike.
    # DiffAugment's translation only, and D judging G's own fakes of the step (reuse_fakes): on Noto from the
    # 270-kimg bundled model, 30 CPU-minutes, FD-EffNet 80.6 with translation alone, 81.6 with colour and
    # translation, 81.3 with translation and reuse_fakes side by side with 83.5 for the full policy (C2ST level,
    # 0.948-0.958 in all); the pair trained 20.6 images per CPU-second against the full policy's 18.9.
    "finetune-fast": {
        "discriminator": "projected",
        "projected_norm": "batch",
        "gan_loss": "hinge",
        "aug": "diffaug",
        "pl_weight": 0.0,
        "g_lr": 0.0005,
        "d_lr": 0.0002,
        "ema_kimg": 10.0,
        "ema_rampup": 0.1,
        "diffaug_policy": "translation",
        "reuse_fakes": True,
    },
}
AUTO_PRESET = "auto"  # the preset chosen by `recommend_recipe` once the run knows its dataset's size
# The fields the presets set: with the auto preset, the ones given explicitly are kept over the chosen preset's.
PRESET_FIELDS = sorted({key for values in PRESETS.values() for key in values})
# Fine-tunes below this many images get the few-image recipe.
FEW_IMAGES = 100
# The fine-tune recipe for 100 images and more: "finetune" or "finetune-fast", whichever benchmarks/quality.py
# measures better. On Noto, 60 CPU-minutes each, finetune-fast led on FD-EffNet and C2ST at every mark, while
# finetune moved away from the data (the README's "A first fine-tune" has the table).
DEFAULT_FINETUNE_RECIPE = "finetune-fast"
DISCRIMINATORS = ("stylegan", "projected")
PROJECTED_SIZES = (64, 128, 256, 512)  # the projected discriminator's input sizes: its scales are size/4 … size/32
PROJECTED_NORMS = ("none", "batch")  # the projected discriminator heads' normalisation (training/projected.py)
GAN_LOSSES = ("logistic", "hinge")


@dataclass
class TrainConfig:
    data: str
    out: str
    base: str = "scratch"
    kimg: float = 100.0
    # Train for about this long instead: the run measures its speed, then sets `kimg` to what fits and records
    # that speed (so a resumed run keeps the same length).
    time_budget_s: float | None = None
    measured_images_per_s: float | None = None
    resolution: int | None = None
    batch: int = 16
    batch_gpu: int | None = None  # micro-batch per device; smaller than batch/ranks means gradient accumulation
    # Network width when training from scratch (a base model brings its own). None: chosen by `auto_width`
    # from the resolution, the dataset's size and the device when the run starts, and recorded in config.json.
    z_dim: int | None = None
    w_dim: int | None = None
    map_layers: int = 2
    channel_base: int | None = None
    channel_max: int | None = None
    # From scratch: activations clamped at ±conv_clamp. None: 256 (NVIDIA's choice) for fp16 runs, else none.
    conv_clamp: float | None = None
    # The discriminator: StyleGAN2's own, or a projected one on frozen EfficientNet-Lite0 features
    # (training/projected.py) seeing images resized to projected_size px.
    discriminator: str = "stylegan"
    projected_size: int = 128
    projected_norm: str = "none"
    # Optimisation (StyleGAN2-ADA recipe).
    gan_loss: str = "logistic"  # or "hinge" (the projected GAN paper's)
    g_lr: float = 0.0025
    d_lr: float = 0.0025
    r1_gamma: float | None = None  # None: see `resolved_r1_gamma`
    r1_interval: int = 16
    # None: NVIDIA's choice for the base's family, 2 and 0.9 for StyleGAN2, 0 and 0 for StyleGAN3 (its configs
    # train without path-length regularisation and style mixing).
    pl_weight: float | None = None
    pl_interval: int = 4
    style_mixing: float | None = None
    # StyleGAN3's blur of every image D sees (reals and fakes alike), Gaussian of this sigma in pixels at the
    # start, fading linearly to none over blur_fade_kimg (None: batch · 200 / 32, NVIDIA's). NVIDIA blurs only
    # when training config R from scratch, and turns it off when resuming from a trained model: 0 here too.
    blur_init_sigma: float = 0.0
    blur_fade_kimg: float | None = None
    # D learns from the fakes G's pass made this step (before G's update) instead of drawing new ones: one G
    # forward fewer per step (1.2x the images/s of benchmarks/train.py at the bundled width on a CPU; 1.08x in
    # finetune-fast's Noto fine-tune), at one step's staleness.
    reuse_fakes: bool = False
    # With reuse_fakes and the projected D: D's step also takes the features of those fakes that G's pass
    # computed (with G's pass's augmentation), so its heads judge them without another pass through the
    # frozen network. Ignored otherwise. Off in finetune-fast: on Noto (two seeds, 30 CPU-minutes) it trained
    # 7 % more images per CPU-second and measured FD-EffNet 79.7 and 82.6 at 30 minutes, level with the recipe
    # without it, but 1-2 points behind at 10 and 20.
    reuse_fake_features: bool = False
    ema_kimg: float | None = None  # None: batch · 10 / 32
    ema_rampup: float | None = 0.05
    # Augmentation.
    aug: str = "ada"
    ada_target: float = 0.6
    ada_kimg: float = 500.0
    ada_preset: str = "bgc"
    diffaug_policy: str = "color,translation,cutout"
    mirror: bool = False
    freeze_d: int = 0
    freeze_mapping: bool = False  # G's mapping network keeps the base's weights (fine-tuning on very few images)
    # Dataset import when `data` is not yet a prepared dataset.
    crop: str = "crop"
    alpha_background: str = "#ffffff"
    # Device and bookkeeping.
    device: str = "auto"
    precision: str = "auto"
    seed: int = 0
    snap_kimg: float = 4.0
    sample_kimg: float = 1.0
    keep_checkpoints: int = 3
    sample_grid: tuple[int, int] = (8, 4)
    metrics_kimg: float = 0.0
    metrics_n: int = 500
    progress_interval_s: float = 1.0
    # The preset the run's values came from (a PRESETS name), why, and, while it is still AUTO_PRESET, the
    # explicitly given values of PRESET_FIELDS that win over the one `resolve_preset` will choose.
    preset: str | None = None
    preset_reason: str | None = None
    preset_overrides: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise ConfigError for the first bad option, naming it."""

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        need(bool(self.data), "--data is required: a folder, zip or prepared dataset")
        need(bool(self.out), "--out is required: the run folder")
        need(self.kimg > 0, f"--kimg must be positive, not {self.kimg}")
        if self.time_budget_s is not None:
            need(self.time_budget_s > 0, f"--minutes must be positive, not {self.time_budget_s / 60:g}")
        if self.measured_images_per_s is not None:
            need(self.measured_images_per_s > 0, "measured_images_per_s must be positive")
        if self.resolution is not None:
            need(
                4 <= self.resolution <= 1024 and 2 ** int(math.log2(self.resolution)) == self.resolution,
                f"--resolution must be a power of two from 4 to 1024, not {self.resolution}",
            )
        need(self.batch >= 1, f"--batch must be at least 1, not {self.batch}")
        if self.batch_gpu is not None:
            need(self.batch_gpu >= 1, f"--batch-gpu must be at least 1, not {self.batch_gpu}")
        for name in ("g_lr", "d_lr"):
            value = getattr(self, name)
            need(0 < value < 1, f"--{name.replace('_', '-')} must be between 0 and 1, not {value}")
        if self.r1_gamma is not None:
            need(self.r1_gamma >= 0, f"--r1-gamma must be non-negative, not {self.r1_gamma}")
        need(self.r1_interval >= 1 and self.pl_interval >= 1, "regularisation intervals must be at least 1")
        if self.pl_weight is not None:
            need(self.pl_weight >= 0, f"--pl-weight must be non-negative, not {self.pl_weight}")
        if self.style_mixing is not None:
            need(0 <= self.style_mixing <= 1, f"--style-mixing must be within 0…1, not {self.style_mixing}")
        need(self.blur_init_sigma >= 0, f"blur_init_sigma must be non-negative, not {self.blur_init_sigma}")
        if self.blur_fade_kimg is not None:
            need(self.blur_fade_kimg > 0, f"blur_fade_kimg must be positive, not {self.blur_fade_kimg}")
        need(
            self.discriminator in DISCRIMINATORS,
            f"--discriminator must be {' or '.join(DISCRIMINATORS)}, not {self.discriminator!r}",
        )
        need(
            self.projected_size in PROJECTED_SIZES,
            f"projected_size must be one of {', '.join(map(str, PROJECTED_SIZES))}, not {self.projected_size}",
        )
        need(
            self.projected_norm in PROJECTED_NORMS,
            f"projected_norm must be {' or '.join(PROJECTED_NORMS)}, not {self.projected_norm!r}",
        )
        need(
            self.discriminator == "stylegan" or self.freeze_d == 0,
            "--freeze-d freezes StyleGAN discriminator blocks; the projected discriminator's network is always "
            "frozen (use --freeze-d 0)",
        )
        need(self.gan_loss in GAN_LOSSES, f"gan_loss must be {' or '.join(GAN_LOSSES)}, not {self.gan_loss!r}")
        need(self.aug in ("ada", "diffaug", "none"), f"--aug must be ada, diffaug or none, not {self.aug!r}")
        need(0 <= self.ada_target <= 1, f"--ada-target must be within 0…1, not {self.ada_target}")
        need(self.ada_kimg > 0, f"--ada-kimg must be positive, not {self.ada_kimg}")
        need(self.freeze_d >= 0, f"--freeze-d must be non-negative, not {self.freeze_d}")
        need(
            self.preset is None or self.preset == AUTO_PRESET or self.preset in PRESETS,
            f"--preset must be {AUTO_PRESET} or one of {', '.join(PRESETS)}, not {self.preset!r}",
        )
        unknown = sorted(set(self.preset_overrides) - set(PRESET_FIELDS))
        need(not unknown, f"preset_overrides holds fields no preset sets: {', '.join(unknown)}")
        need(self.crop in ("crop", "pad", "stretch"), f"--crop must be crop, pad or stretch, not {self.crop!r}")
        need(
            self.precision in ("auto", "fp32", "bf16", "fp16"),
            f"--precision must be auto, fp32, bf16 or fp16, not {self.precision!r}",
        )
        need(self.snap_kimg > 0 and self.sample_kimg > 0, "--snap-kimg and --sample-kimg must be positive")
        need(self.keep_checkpoints >= 1, "--keep-checkpoints must be at least 1")
        need(self.metrics_kimg >= 0 and self.metrics_n >= 10, "--metrics-kimg must be ≥ 0 and --metrics-n ≥ 10")
        need(
            all(v is None or v >= 1 for v in (self.z_dim, self.w_dim)) and self.map_layers >= 1,
            "z/w sizes and mapping depth must be ≥ 1",
        )
        need(
            (self.channel_base or 16) >= 16 and (self.channel_max or 1) >= 1,
            "channel base/max too small",
        )
        if self.conv_clamp is not None:
            need(self.conv_clamp > 0, f"conv_clamp must be positive, not {self.conv_clamp}")
        need(self.progress_interval_s >= 0, "progress_interval_s must be ≥ 0")

    def length_unknown(self) -> bool:
        """A time budget whose speed is not measured yet: the length in kimg is still to be found."""
        return self.time_budget_s is not None and self.measured_images_per_s is None

    def resolved_r1_gamma(self, resolution: int, family: str = "stylegan2") -> float:
        """R1's weight. By default none for the projected discriminator (its paper trains without a gradient
        penalty); for the StyleGAN one ADA's heuristic 0.0002 · resolution² / batch, and for a StyleGAN3 five
        times that: NVIDIA's StyleGAN3 tables (32.8 at 1024², 8.2 at 512² with batch 32; 1 at 256² with batch
        64) are exactly 0.001 · resolution² / batch. Their fine-tunes used 0.1-0.5 times that (MetFaces)."""
        if self.r1_gamma is not None:
            return self.r1_gamma
        if self.discriminator != "stylegan":
            return 0.0
        return (0.001 if family == "stylegan3" else 0.0002) * resolution**2 / self.batch

    def resolved_pl_weight(self, family: str) -> float:
        if self.pl_weight is not None:
            return self.pl_weight
        return 0.0 if family == "stylegan3" else 2.0

    def resolved_style_mixing(self, family: str) -> float:
        if self.style_mixing is not None:
            return self.style_mixing
        return 0.0 if family == "stylegan3" else 0.9

    def resolved_blur_fade_kimg(self) -> float:
        return self.blur_fade_kimg if self.blur_fade_kimg is not None else self.batch * 200 / 32

    def with_width(self, width: NetworkWidth) -> TrainConfig:
        """This config with `width` filling in the network sizes left to be chosen (None); set ones stay."""
        chosen = {k: v for k, v in dataclasses.asdict(width).items() if getattr(self, k) is None}
        return dataclasses.replace(self, **chosen)

    def resolved_ema_kimg(self) -> float:
        return self.ema_kimg if self.ema_kimg is not None else self.batch * 10 / 32

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join(unknown)}")
        data = dict(data)
        if "sample_grid" in data:
            data["sample_grid"] = tuple(data["sample_grid"])
        return cls(**data)

    def dump(self, path: Path) -> None:
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read the run's configuration {path}: {exc}") from exc


@dataclass(frozen=True)
class Recipe:
    """A preset `recommend_recipe` chose, and why, in one line."""

    preset: str
    reason: str


def recommend_recipe(base_is_scratch: bool, dataset_images: int) -> Recipe:
    """The preset for a run, from what is known when it starts. The whole rule table:

    - from scratch: "scratch" (StyleGAN2-ADA's recipe);
    - a fine-tune on fewer than FEW_IMAGES images: "finetune-few" (lower rates, D's first two blocks and G's
      mapping network frozen, ADA): with that few, a free D memorises them and G collapses onto them;
    - any other fine-tune: DEFAULT_FINETUNE_RECIPE, the one benchmarks/quality.py measures better.

    The device and the time budget do not change the choice: nothing measured says they should (the quality
    benchmark compares the recipes at equal CPU time).
    """
    if base_is_scratch:
        return Recipe("scratch", "a run from scratch")
    if dataset_images < FEW_IMAGES:
        why = f"{dataset_images} images, fewer than {FEW_IMAGES}: a free discriminator would memorise them"
        return Recipe("finetune-few", why)
    return Recipe(DEFAULT_FINETUNE_RECIPE, f"{dataset_images} images, {FEW_IMAGES} or more")


def resolve_preset(config: TrainConfig, dataset_images: int) -> TrainConfig:
    """`config` with an AUTO_PRESET replaced by the chosen preset's values (explicit values kept); others as is."""
    if config.preset != AUTO_PRESET:
        return config
    recipe = recommend_recipe(config.base == "scratch", dataset_images)
    resolved = TrainConfig.from_dict(
        {
            **config.to_dict(),
            **PRESETS[recipe.preset],
            **config.preset_overrides,
            "preset": recipe.preset,
            "preset_reason": recipe.reason,
        }
    )
    resolved.validate()
    return resolved


@dataclass(frozen=True)
class NetworkWidth:
    """A from-scratch network's size, as the TrainConfig fields of the same names."""

    channel_base: int
    channel_max: int
    z_dim: int
    w_dim: int

    def channels(self, resolution: int) -> int:
        return min(self.channel_base // resolution, self.channel_max)


def full_width(resolution: int) -> NetworkWidth:
    """StyleGAN2-ADA's 'auto' configuration, which sizes the network from the resolution alone."""
    return NetworkWidth(32768 if resolution >= 512 else 16384, 512, 512, 512)


SMALL_DATASET_IMAGES = 1000


def auto_width(resolution: int, dataset_size: int, device_type: str) -> NetworkWidth:
    """The network width a from-scratch run gets unless told otherwise.

    - CUDA: StyleGAN2-ADA's full width (`full_width`).
    - MPS: half its channels (an Apple GPU is several times slower than the GPUs that width was made for).
    - CPU: 32 channels at the output resolution, at most 128, z and w 128: the bundled model's width at 64 px.
      The full width costs 40-90x more at 32-64 px (`training_macs`): hours per thousand images on a laptop.
    - Datasets under 1000 images get at most half of the device's widest layer (256 on a GPU): they hold
      fewer features to learn, and a smaller network reaches its plateau sooner. A heuristic, not measured.
    """
    full = full_width(resolution)
    if device_type == "cuda":
        width = full
    elif device_type == "mps":
        width = NetworkWidth(full.channel_base // 2, full.channel_max // 2, 256, 256)
    else:
        width = NetworkWidth(32 * resolution, 128, 128, 128)
    if dataset_size < SMALL_DATASET_IMAGES and width.channel_max > 128:
        width = dataclasses.replace(width, channel_max=width.channel_max // 2)
    return width


def training_macs(width: NetworkWidth, resolution: int) -> float:
    """Multiply-adds per image of one training step (G and D, forward and backward), counting convolutions
    and the mapping network: a speed model that compares widths, not a count to the last operation.

    Per image a step runs G forward twice (G's pass, D's fakes) and backward once (about twice a forward),
    and D forward three times (fakes for G, fakes and reals for D) and backward twice (about twice a forward).
    """
    log2 = int(math.log2(resolution))
    ch = width.channels
    g = 9 * ch(4) ** 2 * 16 + 3 * ch(4) * 16  # the 4x4 block's conv and toRGB
    for res in (2**i for i in range(3, log2 + 1)):
        g += 9 * res**2 * (ch(res // 2) * ch(res) + ch(res) ** 2) + 3 * ch(res) * res**2
    g += 2 * width.w_dim * (width.z_dim + width.w_dim)  # mapping (2 layers), style mixing maps twice
    d = 3 * ch(resolution) * resolution**2  # fromRGB
    for res in (2**i for i in range(log2, 2, -1)):
        d += 9 * res**2 * ch(res) ** 2 + (res // 2) ** 2 * (9 + 1) * ch(res) * ch(res // 2)
    d += 9 * 16 * (ch(4) + 1) * ch(4) + 16 * ch(4) ** 2  # epilogue
    return 4 * g + 7 * d


# Training images/s at the bundled model's width at 64 px (batch 8) on a quiet 2-core CPU (issue 12's figures,
# the low ends of 16-24 with native bf16 and 6-9 without): the base that `estimate_images_per_s` scales.
CPU_REFERENCE_IMAGES_PER_S = {"bf16": 16.0, "fp32": 6.0}
CPU_REFERENCE_WIDTH, CPU_REFERENCE_RESOLUTION = NetworkWidth(2048, 128, 128, 128), 64


def estimate_images_per_s(width: NetworkWidth, resolution: int, precision: str) -> float:
    """A 2-core CPU's training speed for `width` at `resolution`, scaled from the measured reference by the work
    per image. For the full width at 32-64 px it gives 0.4-0.8 img/s with bf16 and 0.1-0.3 without, around the
    0.2-0.4 img/s that issue 12 measured there."""
    reference = training_macs(CPU_REFERENCE_WIDTH, CPU_REFERENCE_RESOLUTION)
    return CPU_REFERENCE_IMAGES_PER_S[precision] * reference / training_macs(width, resolution)
