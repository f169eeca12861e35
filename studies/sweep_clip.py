"""Sweep stages, clusters and the logit scale's start for image-text MCL (CLIP stages; see configs/clip.yaml).

    python studies/sweep_clip.py                    # local profile: tiny CLIP on captioned Trifeature (CPU)
    python studies/sweep_clip.py --profile cluster --storage s3://bucket/mcl-ray   # after `ray up cluster.yaml`
    python studies/sweep_clip.py --resume           # continue after the driver was killed
"""

import sys
from pathlib import Path

from mcl_ray.study.cli import study_main

if __name__ == "__main__":
    sys.exit(study_main(default_config=Path(__file__).parent / "configs" / "clip.yaml"))
