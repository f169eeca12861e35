"""mcl-ray: distributed hyperparameter studies of Multistage Contrastive Learning (MCL)."""

__version__ = "0.1.0"
