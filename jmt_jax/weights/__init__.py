"""Pretrained weights: the PyTorch checkpoints' layouts, their conversion into this
model's parameters, and the variables a run starts from."""
