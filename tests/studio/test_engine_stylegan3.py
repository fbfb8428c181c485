"""StyleGAN3 previews in the engine: a slider's previews stop at a lower layer of the network (through an RGB
head fitted to the canvas's last full render), the resting slider's render is the full image, and images that
are not the canvas's frame (thumbnails) never use a head fitted to another image."""

from __future__ import annotations

import numpy as np
import torch

from studio.engine.renderer import Renderer
from studio.engine.session import Session
from studio.engine.state import RenderState
from tests.models import sg3_reference as ref


def test_stylegan3_previews_render_a_lower_layer_while_dragging_and_the_full_image_after(tmp_path):
    G = ref.make_sg3(seed=3, resolution=128)
    path = ref.sg3_pickle(tmp_path, tmp_path / "side-effect", G, name="alias-free.pkl")
    session = Session(path, device="cpu", precision="fp32", data_dir=tmp_path)
    assert session.preview_resolution == 64
    synthesis = session.G.synthesis
    ran = []
    for name in synthesis.layer_names:
        getattr(synthesis, name).register_forward_hook(lambda module, args, out: ran.append(module))
    state = RenderState(model_id="", seed=1)

    first = session.render(state, preview=True)  # nothing fitted yet: the full image (which fits the heads)
    assert len(ran) == len(synthesis.layer_names) and np.array_equal(first, session.render(state))
    assert 64 in synthesis.preview_heads

    renderer = Renderer()
    renderer.set_session(session)
    results = []
    dragged = RenderState(model_id="", seed=1, psi=0.9)
    ran.clear()
    renderer.request(dragged, True, results.append)
    assert renderer.wait_idle(60)
    exit_layer = max(i for i, n in enumerate(synthesis.layer_names) if getattr(synthesis, n).out_sampling_rate == 64)
    assert len(ran) == exit_layer + 1 < len(synthesis.layer_names)  # stopped at the 64 px layer
    preview = results[-1]
    assert preview.preview and preview.error is None and preview.image.shape == (128, 128, 3)
    ran.clear()
    renderer.request(dragged, False, results.append)  # the slider rests
    assert renderer.wait_idle(60)
    renderer.shutdown()
    full = results[-1]
    assert not full.preview and len(ran) == len(synthesis.layer_names)
    # The preview is the full image at a quarter of the resolution, blurred, not another picture.
    error = np.abs(preview.image.astype(float) - full.image.astype(float)).mean()
    unrelated = np.abs(session.render(RenderState(model_id="", seed=7)).astype(float) - full.image).mean()
    assert error < 0.5 * unrelated, (error, unrelated)

    # A thumbnail of another seed, asked for as a preview, renders in full: the head is not fitted to it.
    ran.clear()
    thumbnail = session.render(RenderState(model_id="", seed=5), preview=True, remember=False)
    assert len(ran) == len(synthesis.layer_names)
    with torch.inference_mode():
        assert np.array_equal(thumbnail, session.render(RenderState(model_id="", seed=5), remember=False))
