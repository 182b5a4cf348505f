"""InterFormer Studio, model side: network, checkpoints, predictor, evaluation, training, export."""

__version__ = "0.1.0"
