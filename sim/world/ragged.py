"""Index arithmetic for ragged arrays (runs of equal keys, segments of given lengths).

Several populations are stored as one flat array cut into pieces: an owner's members, a
sender's friends in CSR, a buyer's orders. These helpers do the recurring index arithmetic
once.
"""

import numpy as np


def starts(counts: np.ndarray) -> np.ndarray:
    """Where each segment begins in the flat array.

    >>> starts(np.array([2, 0, 3])).tolist()
    [0, 2, 2]
    """
    return np.cumsum(counts) - counts


def offsets(counts: np.ndarray) -> np.ndarray:
    """Each element's position within its segment, for segments laid end to end.

    >>> offsets(np.array([2, 0, 3])).tolist()
    [0, 1, 0, 1, 2]
    """
    total = int(np.sum(counts))
    return np.arange(total) - np.repeat(starts(counts), counts)


def run_starts(keys: np.ndarray) -> np.ndarray:
    """True where a run of equal values begins in an array sorted (grouped) by key.

    >>> run_starts(np.array([4, 4, 7, 9, 9])).tolist()
    [True, False, True, True, False]
    """
    keys = np.asarray(keys)
    return np.r_[True, keys[1:] != keys[:-1]] if keys.size else np.zeros(0, dtype=bool)


def first_of_run(keys: np.ndarray) -> np.ndarray:
    """For each element of a grouped array, the index of the first element of its run.

    >>> first_of_run(np.array([4, 4, 7, 9, 9])).tolist()
    [0, 0, 2, 3, 3]
    """
    index = np.arange(np.size(keys))
    return np.maximum.accumulate(np.where(run_starts(keys), index, 0))


def rank_in_run(keys: np.ndarray) -> np.ndarray:
    """Each element's position within its run of equal keys (a grouped array).

    >>> rank_in_run(np.array([4, 4, 7, 9, 9])).tolist()
    [0, 1, 0, 0, 1]
    """
    return np.arange(np.size(keys)) - first_of_run(keys)
