"""The Ray engine: every MCL stage a Ray Train job, the between-stage clustering a Ray actor.

This is the only package (with `mcl_ray.study`) that imports Ray; everything it runs is the plain
PyTorch/NumPy code in `mcl_ray.train`, `mcl_ray.mcl` and `mcl_ray.eval`.
"""

from mcl_ray.engine.driver import iter_stages, run_mcl

__all__ = ["iter_stages", "run_mcl"]
