"""What an encoder is built from (plain values; no torch, so the config layer can build it for free)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    """Backbone `[provider:]name`, input size and projection head."""

    backbone: str
    image_size: int
    pretrained: bool | str = False  # open_clip: a pretrained tag
    cifar_stem: bool | str = "auto"
    patch_size: int | None = None
    head: str = "simclr"
    proj_hidden_dim: int = 512
    proj_dim: int = 128
    lock_text: bool = False  # open_clip only: a frozen text tower
    lock_image: int | None = None  # open_clip only: freeze the image tower but for its last N groups
    norm: str = "batch"  # "group": every BatchNorm becomes a GroupNorm (models/norm.py)

    def identity(self) -> dict:
        """The fields hashed into stage keys; `norm` only when not the default, so older keys stay valid."""
        fields = dict(self.__dict__)
        if fields["norm"] == "batch":
            del fields["norm"]
        return fields
