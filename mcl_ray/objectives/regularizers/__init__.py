"""One file per regulariser, named like it: options and loss, registered in REGULARIZERS."""
