"""Logins with --auth: passwords compared in constant time, failed tries throttled per user and client.

After FREE_FAILURES wrong passwords for one (user, client), that pair is locked out for a time that
doubles with each further failure (up to MAX_LOCK_S); while locked, every try (right or wrong) is
answered 429 without checking the password, so guessing costs minutes, not milliseconds. A right
password clears the pair's count. Gradio awaits an async auth callable inside its login route, so
a lockout answers at once and holds no thread.
"""

from __future__ import annotations

import contextvars
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable

from fastapi import HTTPException

FREE_FAILURES = 3
FIRST_LOCK_S = 2.0
MAX_LOCK_S = 300.0
MAX_TRACKED = 10_000  # (user, client) pairs remembered; the oldest are forgotten first

# The client address of the request being served, set by the request guard (ui/server.py): Gradio
# hands the auth callable only the user name and password.
CLIENT: contextvars.ContextVar[str] = contextvars.ContextVar("login_client", default="unknown")


class LoginThrottle:
    def __init__(self, users: dict[str, str], clock: Callable[[], float] = time.monotonic):
        self.users = users
        self.clock = clock
        self.failures: OrderedDict[tuple[str, str], tuple[int, float]] = OrderedDict()  # -> (count, locked until)

    async def login(self, username: str, password: str) -> bool:
        """Gradio's `auth` callable. A coroutine function, not an object with an async __call__:
        Gradio awaits only what `inspect.iscoroutinefunction` says is one, and would take the
        un-awaited coroutine of anything else for a yes."""
        return self.check(username, password, CLIENT.get())

    def check(self, username: str, password: str, client: str) -> bool:
        """Whether the password is right; HTTPException 429 while the pair is locked out."""
        key = (username, client)
        count, locked_until = self.failures.get(key, (0, 0.0))
        wait = locked_until - self.clock()
        if wait > 0:
            raise HTTPException(status_code=429, detail=f"Too many failed logins: try again in {wait:.0f} s")
        if self.right(username, password):
            self.failures.pop(key, None)
            return True
        self.fail(key, count + 1)
        return False

    def right(self, username: str, password: str) -> bool:
        expected = self.users.get(username)
        # compared even for an unknown user, so the time taken does not tell which users exist
        same = hmac.compare_digest(
            password.encode(errors="surrogatepass"), (expected or "\x00" + password).encode(errors="surrogatepass")
        )
        return expected is not None and same

    def fail(self, key: tuple[str, str], count: int) -> None:
        lock = 0.0 if count < FREE_FAILURES else min(FIRST_LOCK_S * 2 ** (count - FREE_FAILURES), MAX_LOCK_S)
        self.failures[key] = (count, self.clock() + lock)
        self.failures.move_to_end(key)
        while len(self.failures) > MAX_TRACKED:
            self.failures.popitem(last=False)
