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
RESERVED = ("path", "split", "caption")


@DATA_SOURCES.register("labeled")
class LabeledFiles(DataSource):
    splits = ("train", "test", "val")
    attributes = ()  # whatever columns the table has
    labels_file = True
    options = ("decode",)

    def read(self, labels) -> tuple[Path, dict[str, list[Any]]]:
        """The table, with its image column named `path` (and its caption column `caption`, for captioned tables)."""
        table = Path(labels).expanduser()
        return table, read_table(table)

    def table_attributes(self, labels) -> list[str]:
        return [c for c in self.read(labels)[1] if c not in RESERVED]

    def files(self, split, *, root, seed, labels=None):
        """The split's listed image files (relative paths resolved against data.root)."""
        if not labels:
            return []
        table, columns = self.read(labels)
        base = Path(root).expanduser()
        return [str(p if Path(p).is_absolute() else base / p)
                for p in (str(columns["path"][i]) for i in split_rows(columns, split, seed, table, self.splits))]

    def count(self, split, *, root, seed, labels=None):
        """Rows of the split in the table (the listed files are checked when loading)."""
        if not labels:
            return None
        table, columns = self.read(labels)
        return len(split_rows(columns, split, seed, table, self.splits))

    def load(self, split, *, root, image_size, download, size, seed, cache_dir, labels=None, decode=None):
        from mcl_ray.data import readers

        table_path, columns = self.read(labels)
        rows = split_rows(columns, split, seed, table_path, self.splits)
        attributes = {name: encode(values, name, table_path) for name, values in columns.items() if name not in RESERVED}
        keep = readers.subsample_indices(len(rows), size, seed, f"{self.name}-{split}")
        if keep is not None:
            rows = rows[keep]
        base = Path(root).expanduser()
        paths = [str(p if Path(p).is_absolute() else base / p) for p in (str(columns["path"][i]) for i in rows)]
        missing = [p for p in paths if not Path(p).is_file()]
        if missing:
            raise DataError(f"{table_path}: {len(missing)} listed image files do not exist, e.g. {missing[0]} "
                            f"(relative paths are resolved against data.root = {base})")
        images = readers.decode_listed(paths, {k: v[rows] for k, v in attributes.items()}, image_size, base=base,
                                       cache_dir=cache_dir, set_name=f"{self.name}-{split}", name=self.name,
                                       decode=decode)
        if "caption" in columns:
            images.captions = [str(columns["caption"][i]) for i in rows]
        images.value_names = {name: names for name, values in columns.items() if name not in RESERVED
                              and (names := value_names(values)) is not None}
        return images

    name = "labeled"


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


def read_table(path: Path, *, image_columns: tuple[str, ...] = ("path",), need_attributes: bool = True) -> dict[str, list[Any]]:
    """Columns of a CSV, TSV or Parquet file, the first of `image_columns` present renamed `path`; a DataError
    names the file when it is missing, unreadable or has no image column. A .tsv file, or a header with tabs and
    no commas (open_clip's default), is read tab-separated."""
    if not path.is_file():
        raise DataError(f"data.labels: file {path} does not exist")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            columns = pq.read_table(path).to_pydict()
        else:
            import csv

            with path.open(newline="") as fh:
                header = fh.readline()
                fh.seek(0)
                tabs = path.suffix.lower() == ".tsv" or ("\t" in header and "," not in header)
                reader = csv.DictReader(fh, delimiter="\t" if tabs else ",")
                rows = list(reader)
                columns = {name: [row[name] for row in rows] for name in reader.fieldnames or []}
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"data.labels: cannot read {path}: {exc}") from None
    except Exception as exc:  # pyarrow's own errors (ArrowInvalid, ...)
        raise DataError(f"data.labels: cannot read {path}: {exc}") from None
    image = next((c for c in image_columns if c in columns), None)
    if image is None:
        raise DataError(f"data.labels: {path} has no {' / '.join(repr(c) for c in image_columns)} column "
                        f"(columns: {', '.join(columns)})")
    columns = {"path": columns.pop(image), **columns}
    if not columns["path"]:
        raise DataError(f"data.labels: {path} lists no images")
    if need_attributes and len(columns) == 1 + ("split" in columns) + ("caption" in columns):
        raise DataError(f"data.labels: {path} has no attribute columns besides {', '.join(RESERVED)}")
    return columns


def value_names(values: list[Any]) -> tuple[str, ...] | None:
    """The names behind a string attribute's codes (sorted, as `encode` numbers them); None for integer columns."""
    text = [str(v).strip() for v in values]
    return None if all(t.isdigit() for t in text) else tuple(sorted(set(text)))


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
