"""Generator render latency at batch 1: full images and preview cuts, fp32 vs bf16 autocast, channels-last vs
contiguous activations, fused vs plain modulation, and the display path (`models.fast_synthesis`, "fast").

Run on demand: `python benchmarks/render.py [--quick] [--resolutions 256,512,1024] [--runs 3] [--threads N]
[--cuts 256,1024] [--cases "fp32 channels-last,fast fp32"] [--busy-cores K]`;
`--stylegan3` times StyleGAN3 T and R instead (published widths: T channel_base 32768, channel_max 512; R
doubled, 1×1 convolutions and radial filters), beside NVIDIA's reference way of running the filtered leaky
ReLU (zero-stuffed upsampling, then depthwise convolutions) swapped into the same network; with
`--compare REV`, also beside `models/stylegan3.py` and `models/alias_free.py` as they were at git revision REV
(loaded from git next to this tree's, with the same weights), which is then the baseline of the speed-ups:
`python benchmarks/render.py --stylegan3 --compare 15d3c68 --resolutions 256 --threads 1`.
Networks have random weights in StyleGAN2's published widths (256²: channel_base 16384; 512² and 1024²:
32768; channel_max 512, 8 mapping layers, z = w = 512) and render with const noise under inference_mode.
Every case is warmed up once, then the cases of one resolution and cut are timed in interleaved rounds
(these machines are noisy) and the median is compared with the plain fp32 contiguous baseline of the same
run; "vs eager" compares a case with the eager network in the same precision as it renders in the studio
before the display path (channels-last, plain modulation). The fast cases render every frame from scratch (the
prefix cache is cleared). `--compiled` adds the display path compiled with torch.compile ("compiled" cases,
compared with the eager display path of the same run), after printing how long compiling took; inductor's cache
is TORCHINDUCTOR_CACHE_DIR (a fresh, cold one unless set: run twice with it set to time a warm load). On a CPU
without native bf16 (no AMX / AVX-512 BF16), bf16 autocast is emulated and very slow: it is timed once per case,
cheapest first, until its time budget is spent.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models import stylegan3  # noqa: E402
from models.device import autocast, cpu_has_fast_bf16, select_device, select_precision  # noqa: E402
from models.fast_synthesis import FastSynthesis  # noqa: E402
from models.stylegan2 import Generator  # noqa: E402
from studio.engine.render_threads import RenderThreads  # noqa: E402


@dataclass(frozen=True)
class Case:
    name: str
    dtype: torch.dtype | None  # autocast dtype; None is fp32
    channels_last: bool
    fused: bool
    fast: bool = False  # the display path instead of the eager network
    compiled: bool = False  # the display path compiled with torch.compile
    adaptive: bool = False  # the display path on the thread count the studio's renderer picks (RenderThreads)


BASELINE = Case("fp32 contiguous", None, False, False)
FP32_CASES = [
    BASELINE,
    Case("fp32 contiguous fused", None, False, True),
    Case("fp32 channels-last", None, True, False),
    Case("fp32 channels-last fused", None, True, True),
]
BF16_CASES = [
    Case("bf16 channels-last", torch.bfloat16, True, False),
    Case("bf16 contiguous", torch.bfloat16, False, False),
]
FAST_FP32 = Case("fast fp32", None, True, False, fast=True)
FAST_BF16 = Case("fast bf16", torch.bfloat16, True, False, fast=True)
# What each precision rendered with in the studio before the display path, for the "vs eager" column.
EAGER_REFERENCE = {None: FP32_CASES[2], torch.bfloat16: BF16_CASES[0]}
FP32_CASES += [FAST_FP32, Case("fast fp32 adaptive threads", None, True, False, fast=True, adaptive=True)]
BF16_CASES += [FAST_BF16, Case("fast bf16 adaptive threads", torch.bfloat16, True, False, fast=True, adaptive=True)]
COMPILED_CASES = {
    None: Case("fast fp32 compiled", None, True, False, fast=True, compiled=True),
    torch.bfloat16: Case("fast bf16 compiled", torch.bfloat16, True, False, fast=True, compiled=True),
}


def make_generator(resolution: int, device: torch.device) -> Generator:
    torch.manual_seed(resolution)
    G = Generator(
        z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
        mapping_kwargs=dict(num_layers=8),
        synthesis_kwargs=dict(channel_base=16384 if resolution <= 256 else 32768, channel_max=512),
    )
    return G.eval().requires_grad_(False).to(device)


def renderer(G: Generator, case: Case, cut: int, device: torch.device) -> Callable[[], tuple[float, float]]:
    """A function that renders once and returns its wall and process CPU times in seconds.

    On a busy machine the CPU time is the steadier figure; with several threads it includes their spinning.
    """
    z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0)).to(device)
    stop_at = cut if cut < G.img_resolution else None
    sync = {"cuda": torch.cuda.synchronize, "mps": torch.mps.synchronize}.get(device.type, lambda: None)

    fast = FastSynthesis(G.synthesis, case.dtype) if case.fast else None
    threads = RenderThreads(most=torch.get_num_threads()) if case.adaptive else None
    if case.compiled:
        with torch.inference_mode():
            ws = G.to_ws(G.z_to_w(z))
        cache = Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
        state = "warm" if any(cache.rglob("*")) else "cold"
        started = time.perf_counter()
        fast = fast.compiled(ws)
        print(f"{label(G.img_resolution, cut, case)}compiled in {time.perf_counter() - started:.0f} s ({state} cache)")

    def run() -> tuple[float, float]:
        G.synthesis.channels_last = case.channels_last
        sync()
        wall, cpu = time.perf_counter(), time.process_time()
        if fast is not None:
            fast._cache = None  # every frame from scratch
            def frame() -> torch.Tensor:
                return fast(G.to_ws(G.z_to_w(z)), noise_mode="const", stop_at=stop_at)

            with torch.inference_mode():
                if threads is None:
                    frame()
                else:  # on the count it picks, then back to the other cases' count
                    threads.render(frame)
                    torch.set_num_threads(threads.most)
        else:
            with torch.inference_mode(), autocast(device, case.dtype):
                G.render(z, noise_mode="const", stop_at=stop_at, fused=case.fused)
        sync()
        return time.perf_counter() - wall, time.process_time() - cpu

    return run


def make_stylegan3(resolution: int, config: str) -> stylegan3.Generator:
    torch.manual_seed(resolution)
    wide = config == "R"
    extra = dict(conv_kernel=1, use_radial_filters=True) if wide else {}
    G = stylegan3.Generator(
        z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
        channel_base=65536 if wide else 32768, channel_max=1024 if wide else 512, **extra,
    )
    return G.eval().requires_grad_(False)


def _zero_stuffed_upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up: int, down: int, padding, gain: float):
    """NVIDIA's `_upfirdn2d_ref`: insert zeros, pad, two depthwise 1-D convolutions (or one 2-D), decimate."""
    n, c, h, w = x.shape
    if up > 1:
        x = torch.nn.functional.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    px0, px1, py0, py1 = padding
    x = torch.nn.functional.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    if f is not None:
        f = (f * gain ** (f.ndim / 2)).flip(list(range(f.ndim))).to(x.dtype)
        if f.ndim == 1:
            x = torch.nn.functional.conv2d(x, f[None, None, None].expand(c, 1, 1, -1), groups=c)
            x = torch.nn.functional.conv2d(x, f[None, None, :, None].expand(c, 1, -1, 1), groups=c)
        else:
            x = torch.nn.functional.conv2d(x, f[None, None].expand(c, 1, *f.shape), groups=c)
    return x[:, :, ::down, ::down]


def nvidia_reference_filtered_lrelu(x, fu, fd, b, up=1, down=1, padding=(0, 0, 0, 0), gain=2**0.5, slope=0.2,
                                    clamp=None):
    """NVIDIA's `_filtered_lrelu_ref`, the path its code takes without the CUDA extension."""
    x = x + b.to(x.dtype).reshape(1, -1, 1, 1)
    x = _zero_stuffed_upfirdn2d(x, fu, up, 1, padding, up**2)
    x = torch.nn.functional.leaky_relu(x, slope) * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return _zero_stuffed_upfirdn2d(x, fd, 1, down, (0, 0, 0, 0), 1)


def modules_at(rev: str, names: list[str]) -> dict[str, types.ModuleType]:
    """The modules `names` (of this package tree) as they were at git revision `rev`, loaded beside this tree's
    own: their imports of each other resolve to the old versions, anything else to this tree's modules."""
    saved = {name: sys.modules.get(name) for name in names}
    loaded = {}
    try:
        for name in names:
            path = name.replace(".", "/") + ".py"
            show = ["git", "-C", str(REPO), "show", f"{rev}:{path}"]
            source = subprocess.run(show, check=True, capture_output=True, text=True).stdout
            module = sys.modules[name] = types.ModuleType(name)
            module.__file__ = f"{rev}:{path}"
            exec(compile(source, module.__file__, "exec"), module.__dict__)
            loaded[name] = module
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return loaded


def old_stylegan3(G: stylegan3.Generator, rev: str) -> tuple[types.ModuleType, torch.nn.Module]:
    """The module `models.stylegan3` at `rev` and its generator with `G`'s weights."""
    module = modules_at(rev, ["models.alias_free", "models.stylegan3"])["models.stylegan3"]
    old = module.Generator(**G.init_kwargs)
    old.load_state_dict(G.state_dict())
    return module, old.eval().requires_grad_(False)


def stylegan3_renderer(G, dtype: torch.dtype | None, reference: bool, module: types.ModuleType = stylegan3):
    """Renders with `G` (a generator of `module`); `reference` swaps NVIDIA's reference op into `module`."""
    z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0))

    def run() -> tuple[float, float]:
        original = module.filtered_lrelu
        module.filtered_lrelu = nvidia_reference_filtered_lrelu if reference else original
        try:
            wall, cpu = time.perf_counter(), time.process_time()
            with torch.inference_mode(), autocast(torch.device("cpu"), dtype):
                G.render(z)
            return time.perf_counter() - wall, time.process_time() - cpu
        finally:
            module.filtered_lrelu = original

    return run


def stylegan3_main(resolutions: list[int], rounds: int, reference_runs: int, compare: str | None) -> None:
    """Rows per config: ours in fp32 (the baseline of the speed-up, unless `compare` names a revision whose
    code is the baseline then), ours in bf16 where native, and NVIDIA's reference filtered leaky ReLU in the
    same network (fp32, `reference_runs` rounds: it is slow)."""
    print(f"{'res':>5}  {'cfg':>8}  {'case':<26}{'median ms':>10}{'min ms':>10}{'cpu ms':>10}{'runs':>5} speed-up")
    precisions = [("fp32", None)] + ([("bf16", torch.bfloat16)] if cpu_has_fast_bf16() else [])
    for resolution in resolutions:
        for config in ("T", "R"):
            G = make_stylegan3(resolution, config)
            cases = {}
            if compare:
                module, old = old_stylegan3(G, compare)
                for name, dtype in precisions:
                    old_case = Case(f"{name} {compare}", dtype, False, False)
                    cases[old_case] = stylegan3_renderer(old, dtype, False, module)
            for name, dtype in precisions:
                cases[Case(f"{name} ours", dtype, False, False)] = stylegan3_renderer(G, dtype, False)
            times = time_interleaved(cases, rounds)
            if reference_runs:
                reference = Case("fp32 NVIDIA reference op", None, False, False)
                run = stylegan3_renderer(G, None, True)
                times[reference] = [run() for _ in range(reference_runs)]  # no warm-up: too slow to repeat
            base = statistics.median(t[0] for t in next(iter(times.values())))
            for case, t in times.items():
                print(row(resolution, resolution, case, t, base).replace("    full", f"{config:>8}", 1), flush=True)


def time_interleaved(
    runs: dict[Case, Callable[[], tuple[float, float]]], rounds: int
) -> dict[Case, list[tuple[float, float]]]:
    for run in runs.values():
        run()  # warm-up: oneDNN builds its kernels on first use of a shape
    times: dict[Case, list[tuple[float, float]]] = {case: [] for case in runs}
    for _ in range(rounds):
        for case, run in runs.items():
            times[case].append(run())
    return times


def _render_in_child(resolution: int, cut: int, case: Case, threads: int, conn: Connection) -> None:
    torch.set_num_threads(threads)
    device = torch.device("cpu")
    conn.send(renderer(make_generator(resolution, device), case, cut, device)())


def timed_with_timeout(resolution: int, cut: int, case: Case, timeout: float) -> tuple[float, float] | None:
    """One CPU render in a child process, killed after `timeout` s (a running torch op cannot be interrupted)."""
    spawn = multiprocessing.get_context("spawn")
    receiver, sender = spawn.Pipe(duplex=False)
    child = spawn.Process(target=_render_in_child, args=(resolution, cut, case, torch.get_num_threads(), sender))
    child.start()
    result = receiver.recv() if receiver.poll(timeout) else None
    child.kill()
    child.join()
    return result


def label(resolution: int, cut: int, case: Case) -> str:
    return f"{resolution:>5}  {'full' if cut == resolution else f'cut {cut}':>8}  {case.name:<26}"


def row(
    resolution: int, cut: int, case: Case, times: list[tuple[float, float]], baseline: float,
    eager: list[tuple[float, float]] | None = None,
) -> str:
    wall = [t[0] for t in times]
    cpu = statistics.median(t[1] for t in times)
    median = statistics.median(wall)
    text = (
        f"{label(resolution, cut, case)}{median * 1e3:>10.1f}{min(wall) * 1e3:>10.1f}{cpu * 1e3:>10.1f}"
        f"{len(times):>5}{baseline / median:>9.2f}×"
    )
    if eager:  # wall and CPU time ratios against the eager reference of the same precision
        eager_wall, eager_cpu = statistics.median(t[0] for t in eager), statistics.median(t[1] for t in eager)
        text += f"{eager_wall / median:>8.2f}×{eager_cpu / cpu:>8.2f}×"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256² only, 2 rounds, a short bf16 budget")
    parser.add_argument("--resolutions", default="256,512,1024", help="comma-separated, e.g. 256,1024")
    parser.add_argument("--runs", type=int, default=3, help="timed rounds per case (after one warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--bf16-budget", type=float, default=60.0, help="seconds for emulated bf16 (CPU)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    parser.add_argument("--cuts", default=None, help="comma-separated image sizes to time (default: all)")
    parser.add_argument("--cases", default=None, help="comma-separated case names (default: all)")
    parser.add_argument("--compiled", action="store_true", help="add the display path compiled by torch.compile")
    parser.add_argument("--stylegan3", action="store_true", help="StyleGAN3 T and R on the CPU instead")
    parser.add_argument("--reference-runs", type=int, default=1, help="StyleGAN3: runs of NVIDIA's reference op")
    parser.add_argument("--compare", metavar="REV", help="StyleGAN3: also time the code of git revision REV")
    parser.add_argument(
        "--busy-cores", type=int, default=0, help="keep this many cores busy with spinning processes meanwhile"
    )
    args = parser.parse_args()
    # Another program (a training run) holding cores: what live renders meet while an artist trains.
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy_cores)]
    try:
        run_benchmarks(args)
    finally:
        for spinner in spinners:
            spinner.kill()


def run_benchmarks(args: argparse.Namespace) -> None:
    resolutions = [256] if args.quick else [int(r) for r in args.resolutions.split(",")]
    rounds = 2 if args.quick else args.runs
    bf16_budget = 30.0 if args.quick else args.bf16_budget
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.stylegan3:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}")
        stylegan3_main(resolutions, rounds, args.reference_runs, args.compare)
        return
    device = select_device(args.device)
    emulated_bf16 = device.type == "cpu" and not cpu_has_fast_bf16()
    auto = select_precision(device)

    print(
        f"torch {torch.__version__} on {device.type} ({torch.get_num_threads()} threads); "
        f"native bf16: {'no' if emulated_bf16 else 'yes'}; auto precision: {'fp32' if auto is None else auto}; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, {args.busy_cores} kept busy"
    )
    print("speed-up = baseline median / case median, baseline = fp32 contiguous plain modulation, same run\n")
    print("vs eager (wall, cpu) = the eager channels-last case of the same precision / case, same run")
    print("  (for the compiled cases: the eager display path of the same precision / case)")
    print(
        f"{'res':>5}  {'image':>8}  {'case':<26}{'median ms':>10}{'min ms':>10}{'cpu ms':>10}{'runs':>5} speed-up"
        "  vs eager (wall, cpu)"
    )
    wanted = set(args.cases.split(",")) if args.cases else None
    fp32_cases = [c for c in FP32_CASES if wanted is None or c.name in wanted or c == BASELINE]
    bf16_cases = [c for c in BF16_CASES if wanted is None or c.name in wanted]
    if args.compiled:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="inductor-"))
        fp32_cases += [c for c in COMPILED_CASES.values() if c.dtype is None and (wanted is None or c.name in wanted)]
        bf16_cases += [c for c in COMPILED_CASES.values() if c.dtype and (wanted is None or c.name in wanted)]
    started = time.perf_counter()
    bf16_jobs: list[tuple[float, int, int, Case]] = []
    baselines: dict[tuple[int, int], float] = {}
    for resolution in resolutions:
        G = make_generator(resolution, device)
        cuts = [c for c in (64, 128, 256, 512) if c < resolution] + [resolution]
        if args.cuts:
            cuts = [c for c in cuts if str(c) in args.cuts.split(",")]
        for cut in cuts:
            runs = {case: renderer(G, case, cut, device) for case in fp32_cases}
            if not emulated_bf16:
                runs |= {case: renderer(G, case, cut, device) for case in bf16_cases}
            times = time_interleaved(runs, rounds)
            baselines[resolution, cut] = statistics.median(t[0] for t in times[BASELINE])
            for case, t in times.items():
                eager = times.get(EAGER_REFERENCE[case.dtype]) if case.fast else None
                if case.compiled:  # against the eager display path
                    eager = times.get(FAST_BF16 if case.dtype else FAST_FP32)
                print(row(resolution, cut, case, t, baselines[resolution, cut], eager), flush=True)
            if emulated_bf16:
                bf16_jobs += [(baselines[resolution, cut], resolution, cut, case) for case in bf16_cases]

    if bf16_jobs:
        # Emulated bf16 ran 10-200× slower than fp32 here, so no estimate is safe: each case runs once (no
        # warm-up) in a child process that is stopped after a third of the budget, or when it is spent.
        print(f"\nemulated bf16: one run per case, cheapest first, in child processes, within {bf16_budget:.0f} s")
        deadline = time.perf_counter() + bf16_budget
        for baseline, resolution, cut, case in sorted(bf16_jobs, key=lambda job: job[0]):
            left = deadline - time.perf_counter()
            if left < 5:  # a child needs a few seconds to start
                print(f"{label(resolution, cut, case)}  skipped: the bf16 budget is spent")
                continue
            cap = min(left, bf16_budget / 3)  # so that one hopeless case leaves time for the others
            result = timed_with_timeout(resolution, cut, case, cap)
            if result is None:
                print(f"{label(resolution, cut, case)}  stopped after {cap:.0f} s", flush=True)
            else:
                print(row(resolution, cut, case, [result], baseline), flush=True)
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
