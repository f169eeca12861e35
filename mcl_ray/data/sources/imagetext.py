"""imagetext: your own image-caption pairs, listed in a table (CSV, TSV or Parquet) named by data.labels.

open_clip's CSV convention: an image column `filepath` and a caption column `title` (tab-separated by default
there; a .tsv file or a tab-only header is read that way here), also accepted as `path` / `image` and `caption` /
`text`. Optional: a `split` column (train / test / val; without one a seeded 20% is the test split) and any other
columns as integer or string attributes, which are evaluated like `labeled`'s (kNN, linear probe, zero-shot).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcl_ray.data.registry import DATA_SOURCES
from mcl_ray.data.sources.labeled import LabeledFiles, read_table
from mcl_ray.errors import DataError

IMAGE_COLUMNS = ("filepath", "path", "image")
CAPTION_COLUMNS = ("title", "caption", "text")


@DATA_SOURCES.register("imagetext")
class ImageTextTable(LabeledFiles):
    captions = True
    name = "imagetext"

    def read(self, labels) -> tuple[Path, dict[str, list[Any]]]:
        table = Path(labels).expanduser()
        columns = read_table(table, image_columns=IMAGE_COLUMNS, need_attributes=False)
        caption = next((c for c in CAPTION_COLUMNS if c in columns), None)
        if caption is None:
            raise DataError(f"data.labels: {table} has no caption column ({' / '.join(CAPTION_COLUMNS)}); "
                            f"columns: {', '.join(columns)}")
        texts = columns.pop(caption)
        blank = [i for i, c in enumerate(texts) if c is None or not str(c).strip()]
        if blank:
            raise DataError(f"data.labels: {table} row {blank[0] + 2} has an empty caption (column {caption!r})")
        return table, {**columns, "caption": texts}
