"""Non-finite values in training steps: found, counted, announced, never repaired in silence.

Every optimiser step first counts the NaN and inf values in its gradients (after unscaling). A step that has
any is not applied (a gradient clamped to ±1e5 and fed to Adam is a full-size step in a random direction), and
the trainer announces it with the counts. Under fp16 the losses go through a GradScaler: gradients that
overflow only because its scale is too high (finite losses, scale above 1) are its normal way of finding the
scale, which it then halves. Any other non-finite step counts against reduced precision, and a run with
FALLBACK_LIMIT of them in its last FALLBACK_WINDOW steps falls back to fp32 for good.

Under DDP the gradients are already averaged over the ranks when they are checked, and the losses' verdict is
shared, so every rank makes the same decisions at the same step.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import torch

from models.device import PRECISIONS

FALLBACK_WINDOW = 16
FALLBACK_LIMIT = 4
_NAMES = {dtype: name for name, dtype in PRECISIONS.items()}


class StepGuard:
    """Loss scaling, the non-finite check of each optimiser step, and the fall-back to fp32, for one run.

    Per training step: `backward(loss)` for each backward pass, `step(name, optimizer)` for each optimiser, then
    `end_step()`, which returns the step's report (None when all was finite).
    """

    def __init__(self, device: torch.device, dtype: torch.dtype | None):
        self.device = device
        self.dtype = dtype
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
        self.recent: deque[bool] = deque(maxlen=FALLBACK_WINDOW)
        self.fell_back = False
        self._found: dict[str, int] = {}

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self, name: str, optimizer: torch.optim.Optimizer) -> None:
        """Apply `optimizer`'s step unless its gradients hold NaN or inf; count them if so."""
        self.scaler.unscale_(optimizer)
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        # One fused norm over all gradients is finite unless a value is not (or their squares overflow, counted
        # then as none): 13x cheaper than counting per tensor, which runs only when it is not.
        finite = not grads or bool(torch.nn.utils.get_total_norm(grads).isfinite())
        bad = 0 if finite else int(torch.stack([(~g.isfinite()).sum() for g in grads]).sum())
        if bad:
            self._found[name] = bad
        else:
            optimizer.step()

    def end_step(self, losses: dict[str, float]) -> dict[str, Any] | None:
        """Close the step: the report of its non-finite values, or None. May switch `dtype` to None (fp32)."""
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
        self.scaler.update()
        found, self._found = self._found, {}
        if not found:
            self.recent.append(False)
            return None
        # `found` is the same on every rank (averaged gradients), so every rank reaches this collective.
        bad_losses = sorted(name for name, value in losses.items() if not math.isfinite(value))
        scale_only = scale > 1 and not self._any_rank(bool(bad_losses))
        self.recent.append(not scale_only)
        precision = _NAMES.get(self.dtype, str(self.dtype))
        parts = [f"{n} non-finite gradient values in {name}" for name, n in found.items()]
        if bad_losses:
            parts.append("non-finite " + ", ".join(bad_losses) + " loss")
        report: dict[str, Any] = {
            "nonfinite_grads": found,
            "nonfinite_losses": bad_losses,
            "precision": precision,
            "message": f"{'; '.join(parts)} ({precision}): the update of {' and '.join(found)} was skipped",
        }
        if self.scaler.is_enabled():
            report["loss_scale"] = self.scaler.get_scale()
            report["message"] += f"; loss scale lowered to {report['loss_scale']:g}"
            if scale_only:
                report["message"] += " (the scaler settling: the losses were finite)"
        if self.dtype is not None and sum(self.recent) >= FALLBACK_LIMIT:
            report["fallback"] = "fp32"
            report["message"] += (
                f". {precision} gave non-finite values in {sum(self.recent)} of the last {len(self.recent)} steps: "
                "the run continues in fp32 (slower, more memory)"
            )
            self._fall_back()
        return report

    def _any_rank(self, flag: bool) -> bool:
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return flag
        shared = torch.tensor([float(flag)], device=self.device if self.device.type == "cuda" else "cpu")
        torch.distributed.all_reduce(shared, op=torch.distributed.ReduceOp.MAX)
        return bool(shared.item())

    def _fall_back(self) -> None:
        self.dtype, self.fell_back = None, True
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=False)
        self.recent.clear()

    def state_dict(self) -> dict[str, Any]:
        return {"fp32_fallback": self.fell_back, "scaler": self.scaler.state_dict(), "recent": list(self.recent)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue as the saved run: in fp32 if it had fallen back, else with its loss scale and recent steps."""
        if state["fp32_fallback"]:
            self._fall_back()
            return
        if self.scaler.is_enabled() and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.recent.extend(state["recent"])
