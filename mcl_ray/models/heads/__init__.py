"""One file per projection head, named like it (the `model.head` value): a builder registered in HEADS."""
