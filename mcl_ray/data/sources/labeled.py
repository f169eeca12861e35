"""labeled: your own images with several labels each, listed in a table (CSV or Parquet) named by data.labels.

Columns: `path` (the image file, relative to data.root or absolute), an optional `split` (train / test / val),
and one column per attribute (integers or strings; strings are numbered in sorted order over the whole table,
so every split agrees). Without a split column a seeded 20% of the rows (data.seed) is the test split. Every
attribute is evaluated (kNN and linear probe) and reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcl_ray.data.registry import DATA_SOURCES, DataSource
from mcl_ray.errors import DataError

TEST_FRACTION = 0.2  # without a split column
RESERVED = ("path", "split")


@DATA_SOURCES.register("labeled")
class LabeledFiles(DataSource):
    splits = ("train", "test", "val")
    attributes = ()  # whatever columns the table has
    labels_file = True

    def files(self, split, *, root, seed, labels=None):
        """The split's listed image files (relative paths resolved against data.root)."""
        if not labels:
            return []
        table = Path(labels).expanduser()
        columns = read_table(table)
        base = Path(root).expanduser()
        return [str(p if Path(p).is_absolute() else base / p)
                for p in (str(columns["path"][i]) for i in split_rows(columns, split, seed, table, self.splits))]

    def count(self, split, *, root, seed, labels=None):
        """Rows of the split in the table (the listed files are checked when loading)."""
        if not labels:
            return None
        return len(split_rows(read_table(Path(labels).expanduser()), split, seed, Path(labels).expanduser(), self.splits))

    def load(self, split, *, root, image_size, download, size, seed, cache_dir, labels=None):
        from mcl_ray.data import readers

        table_path = Path(labels).expanduser()
        columns = read_table(table_path)
        rows = split_rows(columns, split, seed, table_path, self.splits)
        attributes = {name: encode(values, name, table_path) for name, values in columns.items() if name not in RESERVED}
        keep = readers.subsample_indices(len(rows), size, seed, f"labeled-{split}")
        if keep is not None:
            rows = rows[keep]
        base = Path(root).expanduser()
        paths = [str(p if Path(p).is_absolute() else base / p) for p in (str(columns["path"][i]) for i in rows)]
        missing = [p for p in paths if not Path(p).is_file()]
        if missing:
            raise DataError(f"{table_path}: {len(missing)} listed image files do not exist, e.g. {missing[0]} "
                            f"(relative paths are resolved against data.root = {base})")
        return readers.decode_listed(paths, {k: v[rows] for k, v in attributes.items()}, image_size, base=base,
                                     cache_dir=cache_dir, set_name=f"labeled-{split}", name="labeled")


def split_rows(columns: dict[str, list[Any]], split: str, seed: int, table_path: Path, splits: tuple[str, ...]):
    """Row numbers of `split`: the split column, or without one a seeded 20% test split (no val)."""
    import numpy as np

    n = len(columns["path"])
    if "split" in columns:
        values = np.asarray([str(s).strip().lower() for s in columns["split"]])
        unknown = sorted(str(s) for s in set(values.tolist()) - set(splits))
        if unknown:
            raise DataError(f"{table_path}: column split has values {unknown}; use train, test or val")
        rows = np.flatnonzero(values == split)
    else:
        test = np.zeros(n, bool)
        test[np.random.default_rng(seed).permutation(n)[: round(TEST_FRACTION * n)]] = True
        rows = np.flatnonzero(test if split == "test" else ~test) if split != "val" else np.array([], int)
    if rows.size == 0:
        raise DataError(f"{table_path}: no rows for split {split!r} (column split, or the seeded 20% test split)")
    return rows


def read_table(path: Path) -> dict[str, list[Any]]:
    """Columns of a CSV or Parquet file; a DataError names the file when it is missing, unreadable or lacks `path`."""
    if not path.is_file():
        raise DataError(f"data.labels: file {path} does not exist")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            columns = pq.read_table(path).to_pydict()
        else:
            import csv

            with path.open(newline="") as fh:
                reader = csv.DictReader(fh)
                rows = list(reader)
                columns = {name: [row[name] for row in rows] for name in reader.fieldnames or []}
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"data.labels: cannot read {path}: {exc}") from None
    except Exception as exc:  # pyarrow's own errors (ArrowInvalid, ...)
        raise DataError(f"data.labels: cannot read {path}: {exc}") from None
    if "path" not in columns:
        raise DataError(f"data.labels: {path} has no 'path' column (columns: {', '.join(columns)})")
    if not columns["path"]:
        raise DataError(f"data.labels: {path} lists no images")
    if len(columns) == 1 + ("split" in columns):
        raise DataError(f"data.labels: {path} has no attribute columns besides {', '.join(RESERVED)}")
    return columns


def encode(values: list[Any], name: str, path: Path):
    """Integer codes for one attribute column: integers kept, anything else numbered in sorted order."""
    import numpy as np

    blank = [i for i, v in enumerate(values) if v is None or (isinstance(v, str) and not v.strip())]
    if blank:
        raise DataError(f"{path}: column {name!r} is empty in row {blank[0] + 1} (every image needs every label)")
    text = [str(v).strip() for v in values]
    if all(t.isdigit() for t in text):
        return np.asarray([int(t) for t in text], dtype=np.int64)
    names = sorted(set(text))
    index = {t: i for i, t in enumerate(names)}
    return np.asarray([index[t] for t in text], dtype=np.int64)
