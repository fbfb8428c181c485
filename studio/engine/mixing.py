"""Style mixing: the StyleGAN figure (row sources take some layers from column sources) and layer presets."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from studio.engine.imaging import grid
from studio.engine.session import Session
from studio.engine.state import RenderState


def layer_presets(num_ws: int) -> dict[str, tuple[int, int]]:
    """Coarse (4-8 px styles: pose, shape), middle (16-32 px: features) and fine (64 px up: colour, texture)
    as (start, end) ranges of ws. Below 64 px (num_ws < 10) the three bands split the layers in thirds."""
    if num_ws >= 10:
        return {"coarse": (0, 4), "middle": (4, 8), "fine": (8, num_ws)}
    coarse = max(1, round(num_ws / 3))
    middle = min(max(coarse + 1, round(2 * num_ws / 3)), num_ws)
    return {"coarse": (0, coarse), "middle": (coarse, middle), "fine": (middle, num_ws)}


def mixing_grid(
    session: Session,
    row_states: Sequence[RenderState],
    col_states: Sequence[RenderState],
    layers: Sequence[int],
) -> np.ndarray:
    """The StyleGAN mixing figure: column sources along the top, row sources down the left, and in cell (i, j)
    row i with the ws indices `layers` taken from column j. Each source keeps its own truncation and edits;
    noise follows the row. Returns uint8 RGB."""
    layers = list(layers)
    if bad := [i for i in layers if not 0 <= i < session.num_ws]:
        raise ValueError(f"mixing layers {bad} are outside this model's 0-{session.num_ws - 1}")
    rows = [(state, session.ws_for_state(state)) for state in row_states]
    cols = [session.ws_for_state(state) for state in col_states]
    cells: list[np.ndarray | None] = [None]
    cells += [session.render_ws(ws, state) for state, ws in zip(col_states, cols, strict=True)]
    for state, row_ws in rows:
        cells.append(session.render_ws(row_ws, state))
        for col_ws in cols:
            mixed = row_ws.copy()
            mixed[layers] = col_ws[layers]
            cells.append(session.render_ws(mixed, state))
    return grid(cells, columns=len(cols) + 1)
