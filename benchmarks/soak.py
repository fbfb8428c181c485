"""Soak check of crash-safe training: SIGKILL a small run at random moments, resume it each time, and compare.

Run on demand (not part of the test suite; POSIX only: SIGKILL and fork):
`python benchmarks/soak.py [--kills 20] [--steps 160] [--max-delay 1.0] [--seed 0]`.

Each session runs the CLI's `main` (what `python -m training --events jsonl` runs) in a child process forked
from this one, which has torch imported already: a fresh interpreter spends seconds importing it, which would
make 20 kills take many minutes. This process computes nothing with torch itself (the checks run in children
too), so forking stays safe. One thread per process, fp32 on the CPU, 16 px tiny networks, a checkpoint after
every step so that kills often land mid-write. Each kill comes a random time (uniform, up to --max-delay s)
after the session says it started training (the first session: after its first checkpoint, since before that
there is nothing to resume). After every kill every checkpoint must read whole (digests, network file,
training state), the newest checkpoint's kimg must never go down, and each resume must start from it. After
the last kill the run trains to its end; its networks must equal, bit for bit, those of the same run trained
without interruption. Prints the figures; exits non-zero if a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

os.environ["OMP_NUM_THREADS"] = "1"  # before torch loads: one thread per process, and no thread pool to fork

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.checkpoints import load_checkpoint  # noqa: E402
from training import cli  # noqa: E402
from training.run_dir import RunDir  # noqa: E402

BATCH = 8
NETWORK = ["--resolution", "16", "--channel-base", "256", "--channel-max", "32", "--z-dim", "32", "--w-dim", "32",
           "--map-layers", "2"]
TAKEOVER = "taking the run over"  # how a session announces it took over a killed one's lock


def make_discs(folder: Path, count: int = 24) -> Path:
    """Red discs of random size and place on white: a dataset a tiny GAN can learn a little of."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        image = Image.new("RGB", (32, 32), "white")
        r = int(rng.integers(5, 11))
        cx, cy = rng.integers(r, 32 - r, size=2)
        ImageDraw.Draw(image).ellipse([cx - r, cy - r, cx + r, cy + r], fill=(220, 30, 30))
        image.save(folder / f"disc-{i:03d}.png")
    return folder


def new_run(data: Path, out: Path, steps: int) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--kimg", str(steps * BATCH / 1000), "--batch", str(BATCH),
            "--snap-kimg", str(BATCH / 1000), "--sample-kimg", str(20 * BATCH / 1000), "--keep-checkpoints", "3",
            "--precision", "fp32", "--device", "cpu", "--events", "jsonl", *NETWORK]


def resume(out: Path) -> list[str]:
    return ["--resume", str(out), "--events", "jsonl"]


def fork(work: Callable[[], int]) -> tuple[int, TextIO]:
    """Run `work` in a child process whose stdout is a pipe; (its PID, the pipe's reading end)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.close(read_fd)
            os.dup2(write_fd, 1)
            sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives as long as the child
            code = work()
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            os._exit(code)
    os.close(write_fd)
    return pid, os.fdopen(read_fd)


def run_to_end(work: Callable[[], int]) -> tuple[int, list[dict]]:
    """Run `work` in a child to its end; (its exit code, the JSON lines it printed)."""
    pid, out = fork(work)
    text = out.read()
    out.close()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), events_of(text)


def events_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def check_checkpoints(run: RunDir) -> int:
    """Prints how many checkpoints read whole and how many lack digests (killed between writing the pair and
    its digests); fails on any that does not read whole."""
    found = run.checkpoints()
    for paths in found:
        run.verify(paths)
        load_checkpoint(paths.network)
        torch.load(paths.state, map_location="cpu", weights_only=True)
    print(json.dumps({"readable": len(found), "unsealed": sum(not paths.digests.exists() for paths in found)}))
    return 0


def compare(whole: RunDir, run: RunDir) -> int:
    """Prints how many tensors the two runs' last networks hold and which differ."""
    a, b = (load_checkpoint(r.latest_checkpoint().network) for r in (whole, run))
    tensors = [(f"{name}.{key}", value, getattr(b, name).state_dict()[key])
               for name in ("G_ema", "G", "D") for key, value in getattr(a, name).state_dict().items()]
    differ = [key for key, x, y in tensors if not torch.equal(x, y)] + (["augment_p"] * (a.augment_p != b.augment_p))
    print(json.dumps({"compared": len(tensors) + 1, "differ": differ}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--steps", type=int, default=160, help="length of the run in steps of 8 images")
    parser.add_argument("--max-delay", type=float, default=1.0, help="longest wait (s) from 'started' to the kill")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    failures: list[str] = []
    t0 = time.time()

    with tempfile.TemporaryDirectory(prefix="gan-studio-soak-") as scratch:
        scratch = Path(scratch)
        data = make_discs(scratch / "discs")
        whole, run = RunDir(scratch / "whole"), RunDir(scratch / "killed")
        code, events = run_to_end(lambda: cli.main(new_run(data, whole.root, args.steps)))
        if code != 0:
            print(f"the uninterrupted run failed: {events[-1:]}")
            return 2
        reference_s = time.time() - t0

        latest_nimg, kills, sessions, mid_write, unsealed, takeovers = 0, 0, 0, 0, 0, 0
        lost_steps: list[int] = []
        argv = new_run(data, run.root, args.steps)
        while kills < args.kills:
            sessions += 1
            pid, out = fork(lambda argv=argv: cli.main(argv))
            seen: list[dict] = []
            for line in out:
                seen.append(json.loads(line))
                if seen[-1]["event"] == ("checkpoint" if kills == 0 else "started"):
                    break
            time.sleep(rng.uniform(0, args.max_delay))
            os.kill(pid, signal.SIGKILL)
            seen += events_of(out.read())
            out.close()
            os.waitpid(pid, 0)
            if any(e["event"] == "finished" for e in seen):
                failures.append(f"the run finished before kill {kills + 1}: give it more --steps")
                break
            kills += 1
            takeovers += any(e["event"] == "warning" and TAKEOVER in e["message"] for e in seen)
            started = next((e for e in seen if e["event"] == "started"), None)
            if kills > 1 and (started is None or round(started["cur_kimg"] * 1000) != latest_nimg):
                failures.append(f"session {sessions} did not resume from the newest checkpoint ({latest_nimg} img)")
            mid_write += any(p.name.endswith(".tmp") for p in run.checkpoints_dir.iterdir())
            code, checked = run_to_end(lambda: check_checkpoints(run))
            if code != 0 or not checked:
                failures.append(f"after kill {kills}: a checkpoint does not read whole")
                break
            unsealed += checked[-1]["unsealed"]
            newest = run.latest_checkpoint().nimg
            if newest < latest_nimg:
                failures.append(f"after kill {kills}: the newest checkpoint went back from {latest_nimg} to {newest}")
            steps = [e["step"] for e in seen if e["event"] == "progress"]
            if steps:
                lost_steps.append(max(0, steps[-1] - newest // BATCH))
            latest_nimg = newest
            argv = resume(run.root)

        code, events = run_to_end(lambda: cli.main(resume(run.root)))
        takeovers += any(e["event"] == "warning" and TAKEOVER in e["message"] for e in events)
        if code != 0 or not events or events[-1].get("status") != "completed":
            failures.append(f"the last resume did not complete: {events[-1:]}")
        else:
            _, compared = run_to_end(lambda: compare(whole, run))
            differ = compared[-1]["differ"] if compared else ["(the comparison failed)"]
            if differ:
                failures.append(f"the final weights differ from the uninterrupted run's: {differ[:5]}")
            print(f"final weights equal to the uninterrupted run's, bit for bit: {not differ} "
                  f"({compared[-1]['compared'] if compared else 0} tensors compared)")

    print(f"kills: {kills} (seed {args.seed}, each up to {args.max_delay} s after 'started'); sessions: {sessions + 1}")
    print(f"run: {args.steps} steps of {BATCH} images, a checkpoint after every step, 16 px tiny networks, fp32 CPU")
    print(f"kills that left a half-written .tmp file: {mid_write}; checkpoints found without digests: {unsealed}; "
          f"lock take-overs announced: {takeovers} of {sessions} resumes")
    if lost_steps:
        print(f"steps trained again after a kill (from the last progress event, so at least): mean "
              f"{np.mean(lost_steps):.1f}, max {max(lost_steps)}")
    print(f"uninterrupted run: {reference_s:.0f} s; whole soak: {time.time() - t0:.0f} s")
    for failure in failures:
        print(f"FAILED: {failure}")
    print("soak passed" if not failures else f"soak FAILED ({len(failures)} problems)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
