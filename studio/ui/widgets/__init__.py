"""Reusable widgets shared by the panels: canvas, message bar, thumbnails, sliders, layer strip."""
