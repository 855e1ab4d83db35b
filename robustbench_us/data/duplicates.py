"""Near-duplicate images: 64-bit perceptual hashes, a Hamming threshold, union-find groups.

BUSI publishes no patient ids and holds many re-exports of one scan (other crop,
calipers drawn, adjacent frame), some filed under both benign and malignant.
Two images are linked when the Hamming distance of their pHash (DCT of a 32×32
grey thumbnail, 8×8 low frequencies against their median) is at most
``threshold``; linked images form one group, transitively.

Why 10 by default: on BUSI the number of image pairs per distance is
50, 91, 43, 26, 7, 9, 21, 60, 294, ... for distances 0, 2, 4, ..., 16 (pHash
distances of two median-split hashes are even); the valley is at 8–10, and every
pair at ≤ 10 inspected by eye was the same scan or an adjacent frame of the same
lesion. Past 12 unrelated images start to link. Linking too much only coarsens
a split; linking too little leaks, so the threshold sits at the top of the valley.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

DEFAULT_THRESHOLD = 10
_ROWS = 1024  # rows of the distance matrix computed at once (bounds memory for large sets)


def perceptual_hash(image: Image.Image | np.ndarray) -> int:
    """The 64-bit pHash of an image (any size, grey or colour) as an unsigned integer."""
    try:
        import imagehash  # lazy: only computing hashes needs it, not loading pre-decoded datasets
    except ImportError as exc:
        raise ImportError("perceptual hashes need the imagehash package: pip install imagehash") from exc
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    bits = imagehash.phash(image).hash.reshape(-1)
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def hamming_matrix(hashes: Sequence[int]) -> np.ndarray:
    """All pairwise Hamming distances ``[N, N]`` (uint8) of 64-bit hashes."""
    h = np.asarray([int(x) for x in hashes], dtype=np.uint64)
    out = np.empty((len(h), len(h)), dtype=np.uint8)
    for start in range(0, len(h), _ROWS):
        out[start:start + _ROWS] = np.bitwise_count(h[start:start + _ROWS, None] ^ h[None, :])
    return out


class UnionFind:
    """Disjoint sets over ``0..n-1`` with path halving."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # the smallest index is the root: stable names

    def components(self) -> list[list[int]]:
        """Every set as a sorted list, ordered by its smallest member."""
        sets: dict[int, list[int]] = {}
        for i in range(len(self.parent)):
            sets.setdefault(self.find(i), []).append(i)
        return [sets[k] for k in sorted(sets)]


@dataclass(frozen=True)
class NearDuplicates:
    """Groups of two or more near-identical images (indices into the dataset)."""

    threshold: int
    groups: tuple[tuple[int, ...], ...]
    pairs: int  # image pairs within the threshold
    cross_class: tuple[int, ...]  # positions in ``groups`` whose images carry different labels

    @property
    def n_images(self) -> int:
        """Images that belong to some group."""
        return sum(len(g) for g in self.groups)

    def to_dict(self, ids: Sequence[str], labels: Sequence[int], classes: Sequence[str]) -> dict:
        """JSON-friendly view naming images by id and class."""
        def describe(group: tuple[int, ...]) -> list[dict[str, str]]:
            return [{"id": ids[i], "class": classes[labels[i]]} for i in group]

        sizes = sorted((len(g) for g in self.groups), reverse=True)
        return {
            "method": "phash-64", "threshold": self.threshold, "groups": len(self.groups),
            "images_in_groups": self.n_images, "pairs": self.pairs, "largest": sizes[0] if sizes else 0,
            "cross_class_groups": [describe(self.groups[k]) for k in self.cross_class],
            "all_groups": [[ids[i] for i in g] for g in self.groups],
        }


def find_near_duplicates(hashes: Sequence[int], labels: Sequence[int],
                         threshold: int = DEFAULT_THRESHOLD) -> NearDuplicates:
    """Link images whose hashes are within ``threshold`` bits and return the groups."""
    if not 0 <= threshold <= 64:
        from robustbench_us.errors import DataError

        raise DataError(f"near-duplicate threshold {threshold} must be between 0 and 64 bits.")
    n = len(hashes)
    dist = hamming_matrix(hashes)
    ii, jj = np.nonzero(np.triu(dist <= threshold, k=1))
    uf = UnionFind(n)
    for i, j in zip(ii.tolist(), jj.tolist()):
        uf.union(i, j)
    groups = tuple(tuple(c) for c in uf.components() if len(c) > 1)
    cross = tuple(k for k, g in enumerate(groups) if len({labels[i] for i in g}) > 1)
    return NearDuplicates(threshold=threshold, groups=groups, pairs=len(ii), cross_class=cross)
