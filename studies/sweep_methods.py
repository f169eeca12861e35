"""Sweep stages, clusters and temperature for MCL across the base methods (SimCLR, MoCo v2, +DimCL, +IFM, SPCL, MetAug; see configs/methods.yaml).

    python studies/sweep_methods.py                  # local profile (laptop, CPU)
    python studies/sweep_methods.py --profile cluster --storage s3://bucket/mcl-ray   # after `ray up cluster.yaml`
    python studies/sweep_methods.py --resume         # continue after the driver was killed
"""

import sys
from pathlib import Path

from mcl_ray.study.cli import study_main

if __name__ == "__main__":
    sys.exit(study_main(default_config=Path(__file__).parent / "configs" / "methods.yaml"))
