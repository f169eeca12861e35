"""Let go of the pages of a memory-mapped image set that this process has read (they stay in the page cache).

Every page a process reads through a mapping counts in its resident set (RSS), though the page belongs to the
file, is shared by all workers on the node and can be reclaimed by the OS at any time: after one epoch over a
1M-image set each worker's RSS would be the size of the file. Dropping the mapping's pages from the process now
and then (`madvise(MADV_DONTNEED)` on the read-only shared mapping: nothing is lost, the next read maps the page
again from the page cache, a minor fault) keeps a worker's RSS to what it really holds.

How often: a read maps more than the row it asked for (fault-around, and large page-cache folios on recent
kernels): measured here, a random 3 KB row mapped about 0.5 MB, so 20 training batches of 128 random rows added
1.2 GB to RSS. Releasing after every batch keeps it flat at about 3 ms per such batch (the unmapping work
is proportional to what was mapped, so releasing less often saves nothing).
"""

from __future__ import annotations

import mmap

RELEASE_EVERY = 64  # batches between releases of an output being written sequentially (spilled embeddings)


def release_mapped_pages(images) -> bool:
    """Drop `images`' mapped pages from this process if it is a memory-mapped array; True if it was."""
    mapping = getattr(images, "_mmap", None)  # np.memmap (and its slices) keep the mmap object here
    if mapping is None or getattr(images, "mode", "c") == "c" or not hasattr(mmap, "MADV_DONTNEED"):
        return False  # not mapped, or a private copy-on-write mapping whose changes DONTNEED would discard
    try:
        mapping.madvise(mmap.MADV_DONTNEED)
    except (OSError, ValueError):  # a closed mapping or a platform without madvise: only RSS is at stake
        return False
    return True
