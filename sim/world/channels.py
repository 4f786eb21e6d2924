"""The vocabulary every table shares: sales channels and the direct sources of an exposure.

A *channel* is the route a sale belongs to (who is paid for it); a *source* is who put the
product in front of the consumer. A friend forwarding a streamer clip is source ``friend`` in
channel ``streamer``: the sale still goes through the streamer's link.
"""

from enum import IntEnum


class Channel(IntEnum):
    OWNERS = 0
    STREAMER = 1
    CONVENTIONAL = 2


class Source(IntEnum):
    OWNER = 0
    STREAMER = 1
    FRIEND = 2
    SEARCH = 3


CHANNELS: tuple[str, ...] = tuple(c.name.lower() for c in Channel)
SOURCES: tuple[str, ...] = tuple(s.name.lower() for s in Source)
ALL = "all"  # the label of channel totals in every table
