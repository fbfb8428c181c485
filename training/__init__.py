"""Datasets, augmentation, losses, the training loop and its command line."""
