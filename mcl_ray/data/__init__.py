"""Image sets (Trifeature, CIFAR, STL-10, ImageFolder, one file each in `sources/`) and on-device augmentation.

Nothing is imported here, so the config layer can ask the registry for names without loading torch.
"""
