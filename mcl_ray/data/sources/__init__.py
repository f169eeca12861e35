"""One file per data set, named like it (the `data.name` value): a DataSource registered in DATA_SOURCES."""
