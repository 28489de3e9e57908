"""Training: the trainer, its loops, losses, augmentation, EMA and distributed helpers (torch)."""
