"""Pretrained weights: the PyTorch checkpoints' layouts and their conversion into this
model's parameters."""
