"""The training loop: StyleGAN2-ADA from scratch or fine-tuning a loaded model (StyleGAN2 or StyleGAN3),
resumable, DDP-ready.

`train(config, progress_fn, abort_fn)` is a plain function: the CLI, the GUI (through the CLI's JSON
events) and `torchrun` all run this same code. Everything a resumed run needs to continue exactly —
networks, optimiser moments, ADA p and its accumulators, path-length mean, RNG state and the position in
the data — is in each checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.checkpoints import CheckpointBundle, ModelMeta, load_checkpoint, save_checkpoint
from models.device import autocast, describe, keep_freed_memory, select_device, select_precision
from models.seeds import z_from_seed
from models.stylegan2 import Discriminator, Generator
from training.augment import AdaController, build_augment
from training.compiled import compile_features, compile_synthesis, compile_unavailable, synthesis_compile_unavailable
from training.config import ConfigError, TrainConfig, auto_width, resolve_preset
from training.dataset import PreparedDataset, prepare_dataset
from training.loss import (
    GeneratorForTraining,
    PathLengthPenalty,
    blur_images,
    blur_sigma,
    discriminator_loss,
    generator_loss,
    lazy_adam_hparams,
)
from training.numerics import StepGuard
from training.pace import SmoothedRate, SpeedWarmUp, measure_images_per_s, per_kimg, rate_text
from training.projected import ProjectedDiscriminator
from training.run_data import is_prepared, link_prepared, record_source, source_changes
from training.run_dir import CheckpointPaths, RunDir, RunInUse, save_image_grid, to_uint8

ProgressFn = Callable[[dict[str, Any]], None]
AbortFn = Callable[[], bool]


class TrainingError(RuntimeError):
    """A run that cannot start or continue, with a message for the artist."""


class InfiniteSampler(torch.utils.data.Sampler[int]):
    """Endless, seeded shuffling shared out across ranks; position-addressable so a resumed run continues
    with exactly the images the uninterrupted run would have seen."""

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1, start: int = 0):
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.position = start  # global index into the endless stream, over all ranks

    def _permutation(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.size, generator=gen)

    def __iter__(self) -> Iterator[int]:
        epoch, perm = -1, None
        while True:
            global_index = self.position + self.rank
            self.position += self.world_size
            e, i = divmod(global_index, self.size)
            if e != epoch:
                epoch, perm = e, self._permutation(e)
            yield int(perm[i])


def world_size() -> int:
    """How many processes torchrun launched for this run (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _distributed() -> tuple[int, int, int]:
    """(rank, local rank, world size), in the process group `_process_group` set up."""
    world = world_size()
    if world <= 1:
        return 0, 0, 1
    return torch.distributed.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), world


@contextlib.contextmanager
def _process_group() -> Iterator[None]:
    """The process group of a run launched by torchrun, destroyed when the run ends however it ends: left to
    the interpreter's exit, Gloo's worker threads can abort the process after a completed run (SIGABRT,
    "terminate called without an active exception"). A group the caller set up stays theirs."""
    if world_size() <= 1 or torch.distributed.is_initialized():
        yield
        return
    torch.distributed.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield
        _settle_collectives()
    finally:
        torch.distributed.destroy_process_group()


def _settle_collectives() -> None:
    """Wait until the communication threads have let go of the tensors of the run's last collectives. A Gloo
    worker thread drops a finished collective's tensors after the caller has moved on, and needs the GIL to do
    so; DDP keeps the group (and its threads) alive past `destroy_process_group`, so a drop still pending at the
    interpreter's exit aborted a process that called `train` and then exited normally (SIGABRT, "terminate called
    without an active exception": CI's two-rank test, 5 runs in 41 on 2 cores; the CLI leaves through os._exit).
    One more collective, then a wait with the GIL released until its tensor is ours alone (seconds at most); the
    worker that ran the collective before it had that round trip to finish."""
    if torch.distributed.get_backend() != "gloo":
        return
    token = torch.zeros(1)
    torch.distributed.all_reduce(token)
    deadline = time.monotonic() + 10.0
    while token._use_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.001)


def discriminator_for(G: nn.Module) -> Discriminator:
    """A fresh StyleGAN2 discriminator for G (NVIDIA's StyleGAN3 trains with it too), as wide as G's own
    settings say: a StyleGAN3 config R doubles G's channels, not D's."""
    if getattr(G, "family", "stylegan2") == "stylegan3":
        kw = G.init_kwargs
        halve = 2 if kw.get("use_radial_filters") else 1
        base, widest = kw.get("channel_base", 32768) // halve, kw.get("channel_max", 512) // halve
        clamp = kw.get("conv_clamp", 256)  # the StyleGAN3 code's default, which its D shares
    else:
        sk = G.init_kwargs["synthesis_kwargs"]
        base, widest, clamp = sk.get("channel_base", 32768), sk.get("channel_max", 512), sk.get("conv_clamp")
    return Discriminator(0, G.img_resolution, G.img_channels, channel_base=base, channel_max=widest, conv_clamp=clamp)


def ready_to_train(device: torch.device, *nets: nn.Module) -> None:
    """Networks in training mode on `device`, gradients off until a phase turns them on; on a CPU
    channels-last (oneDNN convolves, backward above all, faster so: benchmarks/train.py)."""
    for net in nets:
        net.train().requires_grad_(False).to(device)
        if device.type == "cpu":
            net.to(memory_format=torch.channels_last)


def step_probe(G: nn.Module, D: nn.Module, device: torch.device, dtype: torch.dtype | None, images: int = 2):
    """One training step's work on `images` images, for `measure_images_per_s`: G's pass through D and its
    backward, new fakes and D on them and on reals, and D's backward (lazy R1 left out: a sixteenth of steps).
    Weights, their EMAs and the run's random streams stay as they were."""
    with torch.random.fork_rng(devices=[]):
        z = torch.randn([images, G.z_dim], device=device)
    reals = torch.zeros([images, G.img_channels, G.img_resolution, G.img_resolution], device=device)

    def unchanged(img: torch.Tensor) -> torch.Tensor:
        return img

    def step() -> None:
        G.requires_grad_(True)
        with autocast(device, dtype):
            loss = generator_loss(D, G(z), None, unchanged)
        loss.backward()
        G.requires_grad_(False)
        D.requires_grad_(True)
        with torch.no_grad(), autocast(device, dtype):
            fake = G(z)
        with autocast(device, dtype):
            loss, _, _ = discriminator_loss(D, fake, reals, None, unchanged, r1_gamma=0.0, r1_gain=0.0)
        loss.backward()
        D.requires_grad_(False)
        for p in (*G.parameters(), *D.parameters()):
            p.grad = None

    return step


@dataclass(frozen=True)
class _Parts:
    """What one training step works on: the networks (plain and DDP-wrapped), augmentation, optimisers."""

    G_train: GeneratorForTraining
    ddp_G: nn.Module
    ddp_D: nn.Module
    D: Discriminator | ProjectedDiscriminator
    g_trainable: list[torch.nn.Parameter]  # all of G's but a frozen mapping network's
    d_trainable: list[torch.nn.Parameter]
    augment: nn.Module
    ada: AdaController | None
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    pl: PathLengthPenalty


class Trainer:
    """One run's state; `train()` below is the public entry point."""

    def __init__(self, config: TrainConfig, progress_fn: ProgressFn | None, abort_fn: AbortFn | None, resume: bool):
        config.validate()
        self.config = config
        self.progress_fn = progress_fn or (lambda event: None)
        self.abort_fn = abort_fn or (lambda: False)
        self.rank, local_rank, self.world = _distributed()
        self.device = select_device(config.device)
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", local_rank)
            torch.cuda.set_device(self.device)
        self.dtype = select_precision(self.device, config.precision)
        if self.device.type == "cpu":
            keep_freed_memory()
        if not resume and config.base == "scratch" and config.conv_clamp is None and self.dtype is torch.float16:
            # NVIDIA's choice for fp16: activations clamped at ±256 keep every layer inside fp16's range.
            # config.json records it, so a resume builds the same network on any device.
            self.config = config = dataclasses.replace(config, conv_clamp=256.0)
        self.run = RunDir(config.out)
        self.resume = resume
        self.start_time = time.time()
        self._last_import_event = 0.0
        self.run_created = False  # the run folder is this run's (not another run's refused), so errors go there
        self._failing: set[str] = set()  # outputs that failed to write and have not worked since
        self.unsaved: str | None = None  # why the last checkpoint could not be written, until one is

    # --- events ---------------------------------------------------------------------------------------

    def emit(self, event: str, **fields: Any) -> None:
        if self.rank != 0:
            return
        record = {"event": event, **fields}
        if event in ("progress", "budget", "checkpoint", "samples", "metrics", "finished", "warning"):
            try:
                self.run.append_stats(record)
                self._failing.discard("stats")
            except OSError as exc:
                self._output_failed("stats", f"cannot add to {self.run.stats_path.name} ({exc})")
        self.progress_fn(record)

    def _output_failed(self, what: str, message: str) -> None:
        """A log line or sample grid that cannot be written (a full disk): the run trains on, and says so once
        until writing works again rather than at every line."""
        if what not in self._failing:
            self._failing.add(what)
            self.progress_fn({"event": "warning", "message": f"{message}: training goes on"})

    # --- set-up ---------------------------------------------------------------------------------------

    def _on_rank0(self, work: Callable[[], None]) -> None:
        """Run `work` on rank 0 only, the other ranks waiting for it. If it fails, every rank raises, so the
        others never sit forever at a barrier rank 0 will not reach (a bad folder, an empty dataset, a full disk)."""
        error: BaseException | None = None
        if self.rank == 0:
            try:
                work()
            except Exception as exc:  # re-raised below, once the other ranks know
                error = exc
        if self.world > 1:
            outcome = [None if error is None else str(error)]
            torch.distributed.broadcast_object_list(outcome, src=0)
            if self.rank != 0 and outcome[0] is not None:
                raise TrainingError(f"rank 0 failed: {outcome[0]}")
        if error is not None:
            raise error

    def prepare_run_dir(self) -> None:
        def create() -> None:
            if not self.resume and self.run.latest_checkpoint() is not None:
                raise TrainingError(
                    f"{self.run.root} already holds a run; resume it with --resume or choose a new --out"
                )
            self.run.create()
            if not self.resume:
                self.config.dump(self.run.config_path)
            self.run_created = True

        self._on_rank0(create)

    def load_base(self) -> tuple[Generator, Discriminator | None, Generator, int]:
        """Networks to start from: a base model (fine-tuning) or fresh ones; returns G, D, G_ema, resolution.

        Not the base's augmentation strength: a fine-tune starts ADA at p = 0, as NVIDIA's does, and lets it
        rise as far as the new (usually small) dataset needs.

        D is the base's StyleGAN discriminator, None from scratch or when the base has none: the recipe, chosen
        once the dataset is read, decides whether a fresh one is needed (`new_discriminator`).
        """
        cfg = self.config
        if cfg.base == "scratch":
            if cfg.resolution is None:
                raise ConfigError("--resolution is required when training from scratch (e.g. --resolution 64)")
            g_kwargs = dict(
                z_dim=cfg.z_dim,
                c_dim=0,
                w_dim=cfg.w_dim,
                img_resolution=cfg.resolution,
                img_channels=3,
                mapping_kwargs=dict(num_layers=cfg.map_layers),
                synthesis_kwargs=dict(
                    channel_base=cfg.channel_base, channel_max=cfg.channel_max, conv_clamp=cfg.conv_clamp
                ),
            )
            G = Generator(**g_kwargs)
            return G, None, copy.deepcopy(G), cfg.resolution
        bundle = load_checkpoint(cfg.base)
        if cfg.resolution is not None and cfg.resolution != bundle.meta.resolution:
            raise ConfigError(
                f"the base model is {bundle.meta.resolution}px; --resolution {cfg.resolution} differs "
                "(leave it out: the dataset is prepared at the base model's resolution)"
            )
        if bundle.meta.c_dim:
            raise ConfigError("conditional (class-labelled) base models cannot be fine-tuned on unlabelled images yet")
        G_ema = bundle.G_ema
        G = copy.deepcopy(bundle.G if bundle.G is not None else bundle.G_ema)
        return G, bundle.D, G_ema, bundle.meta.resolution

    def new_discriminator(self, G: Generator) -> Discriminator:
        """A fresh StyleGAN discriminator as wide as G: from scratch, or for a base model that has none."""
        if self.config.base != "scratch":
            self.emit(
                "warning",
                message="the base model has no discriminator: starting a fresh one, so the first kimg are rougher"
                + (" (none of its blocks frozen: it has learnt nothing to keep)" if self.config.freeze_d else ""),
            )
        return discriminator_for(G)

    def _warn_cpu_speed(self, G: nn.Module, D: nn.Module) -> None:
        """A StyleGAN3 trains several times slower than a StyleGAN2 of its size: say how slow, measured."""
        rate = measure_images_per_s(step_probe(G, D, self.device, self.dtype), images=2)
        self.emit(
            "warning",
            cpu_images_per_s=rate,
            message=f"StyleGAN3 on the CPU: a measured step gives about {rate_text(rate)} img/s, so 1 kimg takes "
            f"about {per_kimg(rate)}",
        )

    def _choose_width(self, dataset_size: int) -> TrainConfig:
        """Fill in the network sizes left to be chosen (`auto_width`) and record them."""
        return self._adopt(self.config.with_width(auto_width(self.config.resolution, dataset_size, self.device.type)))

    def _choose_recipe(self, dataset_size: int) -> TrainConfig:
        """Resolve an auto preset from the dataset's size (`recommend_recipe`) and record it."""
        return self._adopt(resolve_preset(self.config, dataset_size))

    def _adopt(self, cfg: TrainConfig) -> TrainConfig:
        """Make `cfg` the run's configuration, written to config.json when it changed, so that a resumed run (on
        any device) builds the same network with the same recipe."""
        if cfg != self.config:
            self.config = cfg
            self._on_rank0(lambda: self.config.dump(self.run.config_path))
        return self.config

    def _import_progress(self, done: int, total: int, message: str) -> None:
        now = time.time()
        if done == total or now - self._last_import_event >= 0.5:
            self._last_import_event = now
            self.emit("import_progress", done=done, total=total, message=message)

    def load_dataset(self, resolution: int) -> PreparedDataset:
        """The run's own prepared copy of its images (`RUN/dataset`, see run_data.py): made when the run starts,
        the only thing a resumed run reads, so that new or removed source files change nothing."""
        cfg = self.config
        data = Path(cfg.data)
        prepared = self.run.root / "dataset"
        if self.resume and is_prepared(prepared):
            changes = source_changes(self.run.root, data, prepared) if self.rank == 0 else None
        else:
            if not data.exists():
                raise TrainingError(f"the dataset {data} does not exist")
            if self.resume:  # a run from before runs kept their images, or its copy was deleted
                self.emit("warning", message=f"this run has no copy of its images: taking them from {data} again")
            self._on_rank0(lambda: self._import(data, prepared, resolution))
            changes = None
        dataset = PreparedDataset(prepared, xflip=cfg.mirror or None)
        if changes:
            self.emit(
                "warning",
                source_changed=True,
                message=f"{data} changed since this run started ({changes}): the run goes on with the "
                f"{dataset.num_images} images it started with; start a new run to train on them as they are now",
            )
        if dataset.resolution != resolution:
            raise TrainingError(
                f"the dataset {data} was prepared at {dataset.resolution}px but the model is {resolution}px; "
                "point --data at the original images so they are prepared at the right size"
            )
        if dataset.num_channels != 3:
            raise TrainingError(f"the dataset has {dataset.num_channels} channels; training needs RGB images")
        return dataset

    def _import(self, data: Path, prepared: Path, resolution: int) -> None:
        """Fill `RUN/dataset`: a prepared dataset is linked, a folder or zip prepared (and its files noted)."""
        if is_prepared(data):
            link_prepared(data, prepared)
            return
        record_source(self.run.root, data)  # before reading them: a file added meanwhile counts as new
        cfg = self.config
        report = prepare_dataset(
            [data],
            prepared,
            resolution,
            mode=cfg.crop,
            xflip=cfg.mirror,
            background=cfg.alpha_background,
            progress=self._import_progress,
            cancel=self.abort_fn,
        )
        self.emit("import_report", report=report.to_dict(), summary=report.summary())
        if not report.dataset_size:
            raise TrainingError(f"no usable images in {data}:\n{report.summary()}")

    # --- the run ----------------------------------------------------------------------------------------

    def run_training(self) -> dict[str, Any]:
        cfg = self.config
        torch.manual_seed(cfg.seed * self.world + self.rank)
        self.prepare_run_dir()
        dataset = None
        if cfg.base == "scratch" and cfg.resolution is not None:  # the dataset's size sizes the network
            dataset = self.load_dataset(cfg.resolution)
            cfg = self._choose_width(len(dataset))
        G, D, G_ema, resolution = self.load_base()
        if dataset is None:
            dataset = self.load_dataset(resolution)
        cfg = self._choose_recipe(len(dataset))
        # A fresh D for a base model without one has nothing learnt to keep: freezing its blocks would only fix
        # random weights, so --freeze-d applies to a base's own D (and, as asked, from scratch).
        freeze_d = cfg.freeze_d
        if D is None and cfg.discriminator == "stylegan":
            D = self.new_discriminator(G)
            freeze_d = freeze_d if cfg.base == "scratch" else 0
        self.model_D = D  # the StyleGAN D that the run's model files hold
        if cfg.discriminator == "projected":  # small: always starts fresh, from the run's seed
            D = ProjectedDiscriminator(cfg.projected_size, seed=cfg.seed, norm=cfg.projected_norm)
        ready_to_train(self.device, G, D)
        G_ema.requires_grad_(False).to(self.device).eval()
        self.family = getattr(G, "family", "stylegan2")
        if self.family == "stylegan3":
            # NVIDIA's rate for the layers' input-magnitude EMAs: a half-life of 20 kimg whatever the batch.
            for name in G.synthesis.layer_names:
                getattr(G.synthesis, name).magnitude_ema_beta = 0.5 ** (cfg.batch / 20_000)
            if self.device.type == "cpu" and self.rank == 0:
                self._warn_cpu_speed(G, D)
        self.pl_weight = cfg.resolved_pl_weight(self.family)
        frozen = {id(p) for block in (D.blocks()[:freeze_d] if freeze_d else []) for p in block.parameters()}
        d_trainable = [p for p in D.parameters() if id(p) not in frozen]
        frozen_g = {id(p) for p in G.mapping.parameters()} if cfg.freeze_mapping else set()
        g_trainable = [p for p in G.parameters() if id(p) not in frozen_g]

        augment = build_augment(cfg.aug, preset=cfg.ada_preset, p=0.0, policy=cfg.diffaug_policy).to(self.device)
        ada = AdaController(target=cfg.ada_target, adjust_kimg=cfg.ada_kimg) if cfg.aug == "ada" else None

        r1_gamma = cfg.resolved_r1_gamma(resolution, self.family)
        g_lr, g_betas = lazy_adam_hparams(cfg.g_lr, cfg.pl_interval) if self.pl_weight > 0 else (cfg.g_lr, (0.0, 0.99))
        d_lr, d_betas = lazy_adam_hparams(cfg.d_lr, cfg.r1_interval) if r1_gamma > 0 else (cfg.d_lr, (0.0, 0.99))
        # Adam's fused kernel on a CPU: 5.8x faster than its per-tensor loop for the bundled model's G (2.5 ms a step).
        fused = self.device.type == "cpu"
        opt_G = torch.optim.Adam(g_trainable, lr=g_lr, betas=g_betas, eps=1e-8, fused=fused)
        opt_D = torch.optim.Adam(d_trainable, lr=d_lr, betas=d_betas, eps=1e-8, fused=fused)
        pl = PathLengthPenalty()
        self.guard = StepGuard(self.device, self.dtype)

        cur_nimg, step = 0, 0
        if self.resume:
            cur_nimg, step = self._restore(G, D, G_ema, augment, ada, opt_G, opt_D, pl)

        style_mixing = cfg.resolved_style_mixing(self.family)
        G_train = GeneratorForTraining(G, style_mixing)
        ddp_G, ddp_D = G_train, D
        if self.world > 1:
            # DDP registers the parameters that require grad when it wraps; they are toggled per phase later.
            ids = [self.device.index] if self.device.type == "cuda" else None
            for p in g_trainable + d_trainable:
                p.requires_grad_(True)
            # Buffers (w_avg) follow each rank's own batches: no copy from rank 0 before every forward pass.
            ddp_G = nn.parallel.DistributedDataParallel(G_train, device_ids=ids, forward_sync_buffers=False)
            ddp_D = nn.parallel.DistributedDataParallel(D, device_ids=ids, forward_sync_buffers=False)
            G.requires_grad_(False)
            D.requires_grad_(False)

        batch_local = cfg.batch // self.world
        if batch_local * self.world != cfg.batch:
            raise ConfigError(f"--batch {cfg.batch} must be divisible by the number of processes ({self.world})")
        micro = min(cfg.batch_gpu or batch_local, batch_local)
        if batch_local % micro:
            raise ConfigError(f"--batch-gpu {micro} must divide the per-process batch {batch_local}")
        rounds = batch_local // micro
        parts = _Parts(G_train, ddp_G, ddp_D, D, g_trainable, d_trainable, augment, ada, opt_G, opt_D, pl)
        sampler = InfiniteSampler(len(dataset), cfg.seed, self.rank, self.world, start=step * cfg.batch)
        data_iter = iter(sampler)
        warm_up = SpeedWarmUp(cfg.time_budget_s, self.start_time, cur_nimg) if cfg.length_unknown() else None
        total_nimg = None if warm_up else round(cfg.kimg * 1000)
        grid_z = torch.cat([z_from_seed(s, G.z_dim) for s in range(cfg.sample_grid[0] * cfg.sample_grid[1])])

        self.emit(
            "started",
            run_dir=str(self.run.root),
            resolution=resolution,
            kimg=None if warm_up else cfg.kimg,
            time_budget_s=cfg.time_budget_s,
            cur_kimg=cur_nimg / 1000,
            device=describe(self.device, self.dtype),
            world_size=self.world,
            dataset_size=len(dataset),
            base=cfg.base,
            resumed=self.resume,
            r1_gamma=r1_gamma,
            discriminator=cfg.discriminator,
            preset=cfg.preset,
            preset_reason=cfg.preset_reason,
            family=self.family,
            pl_weight=self.pl_weight,
            style_mixing=style_mixing,
            blur_init_sigma=cfg.blur_init_sigma,
        )
        if len(dataset) < 1000:
            self.emit(
                "warning",
                message=f"the dataset is small ({dataset.num_images} images): expect overfitting without "
                f"augmentation (ADA is {'on' if cfg.aug == 'ada' else 'off'})",
            )
        if cur_nimg == 0 and self.rank == 0:
            self._save_samples(G_ema, grid_z, 0)
        steps_left = None if total_nimg is None else -(-(total_nimg - cur_nimg) // cfg.batch)
        self._compile_networks(G_train, D, micro, g_trainable, steps_left)

        next_snap = (cur_nimg // int(cfg.snap_kimg * 1000) + 1) * int(cfg.snap_kimg * 1000)
        next_sample = (cur_nimg // int(cfg.sample_kimg * 1000) + 1) * int(cfg.sample_kimg * 1000)
        next_metrics = (
            (cur_nimg // int(cfg.metrics_kimg * 1000) + 1) * int(cfg.metrics_kimg * 1000) if cfg.metrics_kimg else None
        )
        tick_losses: dict[str, list[torch.Tensor]] = {}  # read (a host sync on a GPU) once per progress event
        tick_start, tick_nimg, last_emit = time.time(), cur_nimg, 0.0
        pace = SmoothedRate()
        status = "completed"

        while total_nimg is None or cur_nimg < total_nimg:
            if self._stop_requested():
                status = "stopped"
                break
            reals = torch.stack([dataset[next(data_iter)][0] for _ in range(batch_local)]).to(self.device)
            reals = reals.float() / 127.5 - 1
            blur = blur_sigma(cur_nimg, cfg.blur_init_sigma, cfg.resolved_blur_fade_kimg())
            losses = self._step(step, reals, parts, micro, rounds, r1_gamma, blur)
            if (report := self.guard.end_step(losses)) is not None:
                self.emit("warning", step=step, **report)
                self.dtype = self.guard.dtype  # fp32 from the next step on, if it fell back
            for k, v in losses.items():
                tick_losses.setdefault(k, []).append(v)
            self._update_ema(G, G_ema, cur_nimg)
            cur_nimg += cfg.batch
            step += 1
            if ada is not None and step % ada.interval == 0:
                ada.update(augment.pipe, cfg.batch)

            now = time.time()
            if warm_up is not None and (measured := self._measure(warm_up, cur_nimg, now)) is not None:
                total_nimg, warm_up = self._fix_length(*measured), None
            done = total_nimg is not None and cur_nimg >= total_nimg
            if now - last_emit >= cfg.progress_interval_s or done:
                seconds = max(now - tick_start, 1e-6)
                if last_emit:  # the first tick holds the first steps' one-off start-up costs
                    pace.add(cur_nimg - tick_nimg, seconds)
                self.emit(
                    "progress",
                    step=step,
                    kimg=cur_nimg / 1000,
                    total_kimg=None if total_nimg is None else total_nimg / 1000,
                    losses=_mean_losses(tick_losses),
                    augment_p=augment.p,
                    ada_rt=ada.rt if ada else None,
                    images_per_s=(cur_nimg - tick_nimg) / seconds,
                    eta_s=0.0 if done else None if total_nimg is None else pace.eta_s(total_nimg - cur_nimg),
                    elapsed_s=now - self.start_time,
                )
                tick_losses, tick_start, tick_nimg, last_emit = {}, now, cur_nimg, now
            if self.rank == 0 and (cur_nimg >= next_sample or done):
                self._save_samples(G_ema, grid_z, cur_nimg)
                next_sample += int(cfg.sample_kimg * 1000) * (
                    1 + (cur_nimg - next_sample) // int(cfg.sample_kimg * 1000)
                )
            if next_metrics is not None and (cur_nimg >= next_metrics or done):
                self._metrics(G_ema, dataset, cur_nimg)
                next_metrics += int(cfg.metrics_kimg * 1000) * (
                    1 + (cur_nimg - next_metrics) // int(cfg.metrics_kimg * 1000)
                )
            if cur_nimg >= next_snap or done:
                self._checkpoint(G, D, G_ema, augment, ada, opt_G, opt_D, pl, cur_nimg, step)
                next_snap += int(cfg.snap_kimg * 1000) * (1 + (cur_nimg - next_snap) // int(cfg.snap_kimg * 1000))

        if status == "stopped":
            self._checkpoint(G, D, G_ema, augment, ada, opt_G, opt_D, pl, cur_nimg, step)
        if self.unsaved:
            raise TrainingError(f"{self.unsaved}; the run stopped there: resume it once the disk has room")
        latest = self.run.latest_checkpoint()
        result = {
            "status": status,
            "kimg": cur_nimg / 1000,
            "step": step,
            "checkpoint": str(latest.network) if latest else None,
            "elapsed_s": time.time() - self.start_time,
        }
        self.emit("finished", **result)
        return result

    def _stop_requested(self) -> bool:
        """The stop request, decided for all ranks at once: when any rank is asked to stop (a signal or the
        STOP file can reach ranks at different steps), every rank leaves the loop at this same step, so none
        waits forever in a collective the others have left."""
        stop = self.abort_fn()
        if self.world > 1:
            flag = torch.tensor([float(stop)], device=self.device if self.device.type == "cuda" else "cpu")
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stop = bool(flag.item())
        return stop

    def _measure(self, warm_up: SpeedWarmUp, cur_nimg: int, now: float) -> tuple[float, int] | None:
        """Rank 0's measurement, shared with the other ranks (each step of the warm-up only), so every rank
        fixes the same length at the same step."""
        measured = warm_up.step(cur_nimg, now) if self.rank == 0 else None
        if self.world > 1:
            shared = [measured]
            torch.distributed.broadcast_object_list(shared, src=0)
            measured = shared[0]
        return measured

    def _fix_length(self, images_per_s: float, total_nimg: int) -> int:
        """The time budget's length, in whole steps, recorded in config.json for a resumed run to keep."""
        batch = self.config.batch
        total_nimg = max(-(-total_nimg // batch) * batch, batch)
        self.config = dataclasses.replace(self.config, kimg=total_nimg / 1000, measured_images_per_s=images_per_s)

        def record() -> None:
            self.config.dump(self.run.config_path)

        self._on_rank0(record)
        self.emit(
            "budget",
            images_per_s=images_per_s,
            total_kimg=total_nimg / 1000,
            time_budget_s=self.config.time_budget_s,
            message=f"measured {images_per_s:.1f} img/s: this run will train {total_nimg / 1000:g} kimg",
        )
        return total_nimg

    def _step(
        self, step: int, reals: torch.Tensor, parts: _Parts, micro: int, rounds: int, r1_gamma: float, blur: float
    ) -> dict[str, torch.Tensor]:
        """One step; `blur` is the sigma of StyleGAN3's blur of every image D sees (0: none)."""
        cfg = self.config
        G_train, ddp_G, ddp_D, D = parts.G_train, parts.ddp_G, parts.ddp_D, parts.D
        ada, opt_G, opt_D, pl = parts.ada, parts.opt_G, parts.opt_D, parts.pl
        augment = parts.augment if blur <= 0 else lambda img: parts.augment(blur_images(img, blur))
        G = G_train.G
        z_dim = G.z_dim
        losses: dict[str, torch.Tensor] = {}  # detached: reading them here would sync with a GPU every step
        g_fakes: list[torch.Tensor] = []
        g_features: list[list[torch.Tensor]] = []
        reuse_features = cfg.reuse_fakes and cfg.reuse_fake_features and isinstance(D, ProjectedDiscriminator)

        def judge_keeping_features(img: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
            features = D.project(img)
            g_features.append([f.detach() for f in features])
            return ddp_D(None, c, features=features)

        def sync_context(module: nn.Module, last: bool):
            return module.no_sync() if (self.world > 1 and not last) else contextlib.nullcontext()

        def no_sync(module: nn.Module):
            return module.no_sync() if self.world > 1 else contextlib.nullcontext()

        # Generator: main loss, and path-length regularisation every pl_interval steps. Gradients of all
        # passes accumulate locally; DDP averages them across ranks on the last backward only.
        for p in parts.g_trainable:
            p.requires_grad_(True)
        opt_G.zero_grad(set_to_none=True)
        do_pl = self.pl_weight > 0 and step % cfg.pl_interval == 0
        passes = ["main"] * rounds + (["pl"] * rounds if do_pl else [])
        for i, kind in enumerate(passes):
            z = torch.randn([micro, z_dim], device=self.device)
            with sync_context(ddp_G, i == len(passes) - 1):
                if kind == "main":
                    with autocast(self.device, self.dtype), no_sync(ddp_D):
                        fake, _ = ddp_G(z, None, update_emas=True)
                        judge = judge_keeping_features if reuse_features else ddp_D
                        loss = generator_loss(judge, fake, None, augment, cfg.gan_loss)
                    self.guard.backward(loss / rounds)
                    losses["G"] = losses.get("G", 0.0) + loss.detach().float() / rounds
                    if cfg.reuse_fakes:
                        g_fakes.append(fake.detach())
                else:
                    with autocast(self.device, self.dtype):
                        pl_fake, pl_ws = ddp_G(z[: max(micro // 2, 1)], None, eager=True)
                    penalty, pl_len = pl(pl_fake.float(), pl_ws)
                    # The penalty does not depend on some parameters (the RGB biases); the zero term
                    # keeps them in the graph so DDP's reducer sees a gradient for every parameter.
                    zero = pl_fake[:, 0, 0, 0].sum() * 0
                    self.guard.backward((penalty * self.pl_weight * cfg.pl_interval + zero) / rounds)
                    losses["pl_length"] = losses.get("pl_length", 0.0) + pl_len / rounds
        G.requires_grad_(False)
        self.guard.step("G", opt_G)

        # Discriminator: main loss (and R1 every r1_interval steps).
        for p in parts.d_trainable:
            p.requires_grad_(True)
        opt_D.zero_grad(set_to_none=True)
        r1_gain = cfg.r1_interval if step % cfg.r1_interval == 0 else 0
        for r in range(rounds):
            last = r == rounds - 1
            if cfg.reuse_fakes:  # G's own fakes, made before its update this step: one G forward fewer
                fake = g_fakes[r]
            else:
                z = torch.randn([micro, z_dim], device=self.device)
                with torch.no_grad(), autocast(self.device, self.dtype):
                    fake, _ = G_train(z, None)
            real = reals[r * micro : (r + 1) * micro]
            with sync_context(ddp_D, last):
                with autocast(self.device, self.dtype):
                    loss, stats, real_logits = discriminator_loss(
                        ddp_D, fake, real, None, augment, r1_gamma, r1_gain, cfg.gan_loss,
                        fake_features=g_features[r] if reuse_features else None,
                    )  # fmt: skip
                self.guard.backward(loss / rounds)
            if ada is not None:
                ada.accumulate(real_logits)
            for k, v in stats.items():
                losses[k] = losses.get(k, 0.0) + v / rounds
            losses["D"] = losses.get("D", 0.0) + loss.detach().float() / rounds
        D.requires_grad_(False)
        self.guard.step("D", opt_D)
        return losses

    def _compile_networks(
        self,
        G_train: GeneratorForTraining,
        D: Discriminator | ProjectedDiscriminator,
        micro: int,
        g_trainable: list[nn.Parameter],
        steps_left: int | None,
    ) -> None:
        """Compile G's synthesis, and a projected D's frozen feature network, where that pays (training.compiled),
        before the first step; whatever cannot or does not pay trains eagerly, and the `compile` event says why."""
        cfg = self.config
        budget = cfg.time_budget_s
        networks = [
            (
                "G",
                synthesis_compile_unavailable(self.device, self.world, self.family, steps_left, budget),
                lambda: compile_synthesis(G_train.G, micro, g_trainable, self.device, self.dtype, not cfg.reuse_fakes),
                lambda compiled: setattr(G_train, "compiled_synthesis", compiled),
            )
        ]
        if isinstance(D, ProjectedDiscriminator):
            networks.append(
                (
                    "D's feature network",
                    compile_unavailable(self.device, self.world, steps_left, budget),
                    lambda: compile_features(D, micro, self.device, self.dtype),
                    lambda compiled: D.compiled_features.update({self.dtype: compiled}),
                )
            )
        notes = [f"{name} trains without torch.compile: {why}" for name, why, _, _ in networks if why is not None]
        to_compile = [(name, build, install) for name, why, build, install in networks if why is None]
        if not to_compile:
            self.emit("compile", status="eager", message="; ".join(notes))
            return
        names = " and ".join(name for name, _, _ in to_compile)
        self.emit("compile", status="compiling", message=f"compiling {names} for this machine (minutes the first time)")
        started = time.perf_counter()
        compiled_names = []
        for name, build, install in to_compile:
            try:
                install(build())
            except Exception as exc:  # whatever inductor raises: that network trains eagerly
                first_line = (str(exc).strip().splitlines() or [""])[0][:300]
                failure = f"compiling failed ({type(exc).__name__}: {first_line})"
                notes.append(f"{name} trains without torch.compile: {failure}")
            else:
                compiled_names.append(name)
        seconds = time.perf_counter() - started
        done = [f"{' and '.join(compiled_names)} compiled in {seconds:.0f} s"] if compiled_names else []
        status = "compiled" if compiled_names else "eager"
        self.emit("compile", status=status, seconds=seconds, message="; ".join(done + notes))

    def _update_ema(self, G: Generator, G_ema: Generator, cur_nimg: int) -> None:
        cfg = self.config
        ema_nimg = cfg.resolved_ema_kimg() * 1000
        if cfg.ema_rampup is not None:
            ema_nimg = min(ema_nimg, cur_nimg * cfg.ema_rampup)
        beta = 0.5 ** (cfg.batch / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
                p_ema.lerp_(p, 1 - beta)  # in place: a third of lerp-then-copy's time
            for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
                b_ema.copy_(b)

    # --- outputs ----------------------------------------------------------------------------------------

    def _save_samples(self, G_ema: Generator, grid_z: torch.Tensor, nimg: int) -> None:
        images = []
        with torch.inference_mode(), autocast(self.device, self.dtype):
            for chunk in grid_z.split(8):
                images.append(to_uint8(G_ema.render(chunk.to(self.device), noise_mode="const")))
        path = self.run.samples_path(nimg)
        try:
            save_image_grid(np.concatenate(images), self.config.sample_grid[0], path)
        except OSError as exc:
            self._output_failed("samples", f"cannot write the sample grid {path.name} ({exc})")
            return
        self._failing.discard("samples")
        self.emit("samples", path=str(path), kimg=nimg / 1000)

    def _metrics(self, G_ema: Generator, dataset: PreparedDataset, nimg: int) -> None:
        from training.metrics import compute_metrics  # loaded only when asked for: it builds a feature network

        if self.rank != 0:
            return
        n = min(self.config.metrics_n, dataset.num_images)
        gen = torch.Generator().manual_seed(12345)
        index = torch.randperm(dataset.num_images, generator=gen)[:n]
        reals = np.stack([dataset[int(i)][0].permute(1, 2, 0).numpy() for i in index])
        fakes = []
        with torch.inference_mode(), autocast(self.device, self.dtype):
            for start in range(0, n, 16):
                z = torch.randn([min(16, n - start), G_ema.z_dim], generator=gen).to(self.device)
                fakes.append(to_uint8(G_ema.render(z, noise_mode="const")))
        result = compute_metrics(reals, np.concatenate(fakes), device=self.device)
        self.emit("metrics", kimg=nimg / 1000, **result)

    def _check_replicas(self, *nets: nn.Module) -> None:
        """Under DDP every rank must hold the same weights; a divergence is a bug worth stopping for."""
        sums = torch.stack([p.detach().float().sum() for net in nets for p in net.parameters()])
        gathered = [torch.empty_like(sums) for _ in range(self.world)]
        torch.distributed.all_gather(gathered, sums)
        if any(not torch.equal(g, gathered[0]) for g in gathered):
            raise TrainingError("the training processes' weights diverged; stopping rather than saving a broken model")

    def _checkpoint(self, G, D, G_ema, augment, ada, opt_G, opt_D, pl, cur_nimg: int, step: int) -> None:
        if self.world > 1:
            self._check_replicas(G, D)
        ranks = self._rank_states(ada, pl)

        def save() -> None:
            paths = self.run.checkpoint_paths(cur_nimg)
            state = {
                "format": "gan-studio-train-state",
                "version": 1,
                "cur_nimg": cur_nimg,
                "step": step,
                "opt_G": opt_G.state_dict(),
                "opt_D": opt_D.state_dict(),
                "augment_p": augment.pipe.p.detach().cpu().clone() if augment.pipe is not None else None,
                "ada": ada.state_dict() if ada is not None else None,
                "pl_mean": pl.mean.detach().cpu().clone(),
                "discriminator": self.config.discriminator,
                # The projected D's heads and fixed projections live here, not in the model file.
                "projected_D": D.state_dict() if isinstance(D, ProjectedDiscriminator) else None,
                "ranks": ranks,  # each process's random generators, path-length mean and ADA counts
                "numerics": self.guard.state_dict(),
            }
            self.run.save_state(paths, state)
            training = {
                "kimg": cur_nimg / 1000,
                "step": step,
                "dataset": str(self.config.data),
                "base": self.config.base,
                "run_dir": str(self.run.root),
                "augment_p": augment.p,
            }
            bundle = CheckpointBundle(
                G_ema=G_ema,
                G=G,
                D=self.model_D,
                augment_p=augment.p,
                meta=ModelMeta.for_networks(
                    G_ema,
                    self.model_D,
                    source_format="native",
                    source_name=paths.network.name,
                    source_sha256="",
                    training=training,
                ),
            )
            save_checkpoint(paths.network, bundle)
            self.run.seal(paths)
            self.run.prune(self.config.keep_checkpoints)
            self.emit("checkpoint", path=str(paths.network), kimg=cur_nimg / 1000)

        self._on_rank0(lambda: self._write_checkpoint(save, cur_nimg))

    def _write_checkpoint(self, write: Callable[[], None], nimg: int) -> None:
        """Run `write`; if it fails (a full disk), no part of the new checkpoint stays, the earlier ones are
        intact (every file is written aside, then renamed), and the run says so and trains on. The run ends
        with an error if its last checkpoint could not be written (see `unsaved`)."""
        paths = self.run.checkpoint_paths(nimg)
        paths.digests.unlink(missing_ok=True)  # of an earlier write at this point (a stop right after a snapshot)
        try:
            write()
        except OSError as exc:
            if not paths.network.exists():  # the state file alone is no checkpoint
                paths.state.unlink(missing_ok=True)
            latest = self.run.latest_checkpoint()
            kept = f"the last one, at {latest.nimg / 1000:g} kimg, is intact" if latest else "there is no earlier one"
            self.unsaved = f"cannot write the checkpoint at {nimg / 1000:g} kimg ({exc}); {kept}"
            self.emit("warning", message=f"{self.unsaved}; training goes on and tries again at the next one")
            return
        self.unsaved = None

    def _read_checkpoint(self) -> tuple[CheckpointPaths, CheckpointBundle, dict[str, Any]]:
        """The newest checkpoint that reads whole. Newer ones that do not (truncated, damaged) are renamed
        `*.damaged`, so that they neither count as the latest nor push good ones out, with a warning."""
        candidates = self.run.checkpoints()
        if not candidates:
            raise TrainingError(f"{self.run.root} has no complete checkpoint to resume from")
        for paths in reversed(candidates):
            try:
                self.run.verify(paths)
                bundle = load_checkpoint(paths.network)
                state = torch.load(paths.state, map_location="cpu", weights_only=True)
                return paths, bundle, state
            except Exception as exc:  # whatever the damage: this pair cannot be resumed from, an older one can
                if self.rank == 0:
                    aside = self.run.set_aside(paths)
                    self.emit(
                        "warning",
                        message=f"the checkpoint at {paths.nimg / 1000:g} kimg cannot be read ({exc}); it is kept "
                        f"as {aside.name} and the run resumes from the one before",
                    )
        raise TrainingError(f"none of the checkpoints in {self.run.checkpoints_dir} can be read; see the warnings")

    def _rank_states(self, ada, pl) -> list[dict[str, Any]]:
        """What differs between the processes, for every rank: random generators (CPU, CUDA, MPS), the
        path-length mean (each rank's own batches) and ADA's sign counts since its last update."""
        mine = {
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "rng_mps": torch.mps.get_rng_state() if self.device.type == "mps" else None,
            "pl_mean": pl.mean.detach().cpu().clone(),
            "ada": ada.state_dict() if ada is not None else None,
        }
        if self.world == 1:
            return [mine]
        gathered: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(gathered, mine)
        return gathered

    def _restore_rank_state(self, state: dict[str, Any], ada, pl) -> None:
        # Checkpoints from before per-rank state held one process's generators at the top level.
        ranks = state.get("ranks") or [dict(state, rng_mps=None)]
        if len(ranks) != self.world:
            self.emit(
                "warning",
                message=f"this run was saved by {len(ranks)} training processes and resumes with {self.world}: "
                "their random streams start afresh, so it does not continue exactly as it would have",
            )
            return
        mine = ranks[self.rank]
        pl.mean = mine["pl_mean"].to(self.device)
        if ada is not None and mine["ada"] is not None:
            ada.load_state_dict(mine["ada"])
        torch.set_rng_state(mine["rng_cpu"])
        if mine["rng_cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(mine["rng_cuda"], self.device)
        if mine["rng_mps"] is not None and self.device.type == "mps":
            torch.mps.set_rng_state(mine["rng_mps"])

    def _restore(self, G, D, G_ema, augment, ada, opt_G, opt_D, pl) -> tuple[int, int]:
        latest, bundle, state = self._read_checkpoint()
        trained_with = state.get("discriminator", "stylegan")
        if trained_with != self.config.discriminator:
            raise TrainingError(
                f"this run was trained with the {trained_with} discriminator; resume it with that one "
                f"(--set discriminator={trained_with})"
            )
        projected = isinstance(D, ProjectedDiscriminator)
        if bundle.G is None or (bundle.D is None and not projected):
            raise TrainingError(f"{latest.network} lacks G or D; it cannot be resumed")
        with torch.no_grad():
            pairs = [(G, bundle.G), (G_ema, bundle.G_ema)] + ([] if projected else [(D, bundle.D)])
            for dst, src in pairs:
                dst.load_state_dict(src.state_dict())
            if projected:
                D.load_state_dict(state["projected_D"])
        opt_G.load_state_dict(state["opt_G"])
        opt_D.load_state_dict(state["opt_D"])
        if augment.pipe is not None and state["augment_p"] is not None:
            augment.pipe.p.copy_(state["augment_p"])
        if ada is not None and state["ada"] is not None:
            ada.load_state_dict(state["ada"])
        pl.mean = state["pl_mean"].to(self.device)
        self._restore_rank_state(state, ada, pl)
        if "numerics" in state:
            self.guard.load_state_dict(state["numerics"])
            if self.guard.fell_back and self.dtype is not None:
                self.dtype = None
                self.emit("warning", message="this run fell back to fp32 after non-finite values; it continues in fp32")
        return int(state["cur_nimg"]), int(state["step"])


def _mean_losses(tick_losses: dict[str, list[torch.Tensor]]) -> dict[str, float]:
    """Each loss's mean over the steps since the last progress event, read from the device in one go."""
    if not tick_losses:
        return {}
    means = torch.stack([torch.stack(values).mean() for values in tick_losses.values()]).tolist()
    return dict(zip(tick_losses, means, strict=True))


def train(
    config: TrainConfig,
    progress_fn: ProgressFn | None = None,
    abort_fn: AbortFn | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Run (or resume) training; events go to `progress_fn`; `abort_fn()` returning True checkpoints and stops.

    A failure is also recorded in the run's `stats.jsonl` as an `error` event, so the run folder says why."""
    with _process_group():
        return _train(Trainer(config, progress_fn, abort_fn, resume))


def _train(trainer: Trainer) -> dict[str, Any]:
    holding = trainer.run.held() if trainer.rank == 0 else contextlib.nullcontext()
    try:
        with holding as dead_pid:
            if dead_pid is not None:
                trainer.emit(
                    "warning",
                    message=f"process {dead_pid} was training this run and ended without releasing it "
                    "(killed or crashed): taking the run over",
                )
            try:
                return trainer.run_training()
            except Exception as exc:
                if trainer.rank == 0 and trainer.run_created:
                    record = {"event": "error", "message": error_message(exc), "kind": type(exc).__name__}
                    trainer.run.append_stats(record)
                raise
    except RunInUse as exc:
        raise TrainingError(str(exc)) from None


def error_message(exc: BaseException) -> str:
    """The text an artist sees for a failure: our own errors as they are, anything else with its type."""
    if isinstance(exc, (ConfigError, TrainingError, RunInUse, ValueError, OSError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def resume_config(run_dir: str | os.PathLike[str]) -> TrainConfig:
    """The configuration a run folder was started with."""
    path = RunDir(run_dir).config_path
    if not path.exists():
        raise TrainingError(f"{run_dir} is not a training run (it has no config.json)")
    return TrainConfig.load(path)


__all__ = ["TrainingError", "InfiniteSampler", "error_message", "train", "resume_config"]
