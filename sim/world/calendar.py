"""Recurring events on the daily tick."""

import math


def occurs_on(day: int, per_week: float) -> bool:
    """True on the days a thing that happens ``per_week`` times a week takes place.

    Occurrences are spread evenly: exactly ``floor(per_week * days / 7)`` of them in the first
    ``days`` days.

    >>> [occurs_on(d, 2) for d in range(7)]
    [False, False, False, True, False, False, True]
    """
    return math.floor((day + 1) * per_week / 7 + 1e-9) > math.floor(day * per_week / 7 + 1e-9)
