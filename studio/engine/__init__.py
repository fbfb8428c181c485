"""Qt-free session logic: the current model, latent state, edits, rendering, export, model library."""
