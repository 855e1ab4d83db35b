"""Data handling shared by the dataset plugins: reading files, near-duplicates, augmentation, audit.

Modules: :mod:`~robustbench_us.data.io` (decode any image / mask file),
:mod:`~robustbench_us.data.catalog` (class folders, masks by naming rule),
:mod:`~robustbench_us.data.files` (:class:`FileDataset`, the in-memory cache),
:mod:`~robustbench_us.data.duplicates` (pHash groups),
:mod:`~robustbench_us.data.augment` (training-time flip / rotate / shift),
:mod:`~robustbench_us.data.audit` (what ``robustbench-us data audit`` reports),
:mod:`~robustbench_us.data.roots` (finding a dataset from ``root`` or ``$ROBUSTBENCH_US_DATA``),
:mod:`~robustbench_us.data.problems` (bad files: one error, or one warning with counts).
"""

from robustbench_us.data.problems import DataWarning
from robustbench_us.data.roots import DATA_ENV

__all__ = ["DATA_ENV", "DataWarning"]
