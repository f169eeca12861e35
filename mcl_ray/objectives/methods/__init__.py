"""One file per contrastive method, named like the method: its options class, registered in METHODS."""
