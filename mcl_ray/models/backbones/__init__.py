"""One file per backbone provider, named like it (the `provider:` prefix of `model.backbone`), in BACKBONES."""
