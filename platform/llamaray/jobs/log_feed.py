"""One poller per job for everyone following its log in this gateway replica.

Each follower used to ask the tracker for the job's record and new lines every half second, so
a hundred followers of one job were two hundred actor calls a second. Now the first follower of
a job starts a feed that polls for all of them and wakes each when lines arrive; the last one to
leave stops it. Followers of one job are capped (`limits.max_log_followers`).
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Awaitable, Callable

from llamaray.api.limits import current_limits
from llamaray.errors import TooManyRequestsError

Poll = Callable[[int], Awaitable[tuple[list[str], bool]]]  # new lines from an index, and "ended"


class _Feed:
    def __init__(self, poll: Poll, every_s: float) -> None:
        self.lines: list[str] = []
        self.ended = False
        self.error: BaseException | None = None
        self.followers = 0
        self.changed = asyncio.Condition()
        self.task = asyncio.get_running_loop().create_task(self._run(poll, every_s))

    async def _run(self, poll: Poll, every_s: float) -> None:
        try:
            while not self.ended:
                lines, ended = await poll(len(self.lines))
                async with self.changed:
                    self.lines += lines
                    self.ended = ended
                    self.changed.notify_all()
                if not ended:
                    await asyncio.sleep(every_s)
        except Exception as exc:  # the followers raise it
            async with self.changed:
                self.error = exc
                self.changed.notify_all()


class LogFeeds:
    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._feeds: dict[str, _Feed] = {}

    def follow(self, job_uuid: str, poll: Poll) -> AsyncIterator[list[str]]:
        """The log so far, then each new batch of lines, until the job has ended. The cap is
        checked here, before a response starts streaming, so a refusal is a clean 429."""
        feed = self._feeds.get(job_uuid)
        if feed is None or feed.error is not None:
            feed = self._feeds[job_uuid] = _Feed(poll, self.every_s)
        limit = current_limits().max_log_followers
        if feed.followers >= limit:
            raise TooManyRequestsError(
                f"{limit} clients already follow job {job_uuid!r}'s log here (limits.max_log_followers)",
                "job_uuid",
                retry_after_s=10,
            )
        return self._stream(job_uuid, feed)

    async def _stream(self, job_uuid: str, feed: _Feed) -> AsyncIterator[list[str]]:
        feed.followers += 1
        read = 0
        try:
            while True:
                async with feed.changed:
                    await feed.changed.wait_for(lambda seen=read: len(feed.lines) > seen or feed.ended or feed.error)
                    lines, ended, error = feed.lines[read:], feed.ended, feed.error
                if error is not None:
                    raise error
                if lines:
                    read += len(lines)
                    yield lines
                if ended and read == len(feed.lines):
                    return
        finally:
            feed.followers -= 1
            if not feed.followers:
                feed.task.cancel()
                if self._feeds.get(job_uuid) is feed:
                    del self._feeds[job_uuid]
