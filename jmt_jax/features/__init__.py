"""The frozen-backbone feature cache: per-clip embeddings extracted once (extract.py),
read by training and evaluation in place of the backbones (cache.py)."""
