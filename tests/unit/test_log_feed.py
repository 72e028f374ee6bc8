"""Followers of one job's log share one poller, all see every line, and are capped."""

import asyncio

import pytest

from llamaray.errors import TooManyRequestsError
from llamaray.jobs.log_feed import LogFeeds

LOG = [f"line {i}" for i in range(10)]


def test_followers_share_one_poller_see_every_line_and_are_capped():
    async def scenario() -> tuple[list[list[str]], int]:
        polls = 0

        async def poll(start: int) -> tuple[list[str], bool]:  # the tracker: two new lines a poll
            nonlocal polls
            polls += 1
            shown = min(len(LOG), polls * 2)
            return LOG[start:shown], shown == len(LOG)

        async def drain(stream) -> list[str]:
            return [line async for batch in stream for line in batch]

        feeds = LogFeeds(every_s=0.01)
        tasks = [asyncio.create_task(drain(feeds.follow("job", poll))) for _ in range(32)]
        await asyncio.sleep(0)  # each follower has joined
        with pytest.raises(TooManyRequestsError):
            feeds.follow("job", poll)  # the 33rd (limits.max_log_followers): refused before streaming
        return await asyncio.gather(*tasks), polls

    seen, polls = asyncio.run(scenario())
    assert all(lines == LOG for lines in seen)
    assert polls == 5  # one poller for the 32, not 32 pollers
