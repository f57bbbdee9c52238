"""The login throttle: a few wrong passwords are free, then the (user, client) pair is locked out for
a time that doubles, right password or not; other clients and users are not affected."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from fastapi import HTTPException

from ui.logins import CLIENT, FIRST_LOCK_S, FREE_FAILURES, MAX_LOCK_S, LoginThrottle


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def locked(throttle: LoginThrottle, user: str, password: str, client: str) -> bool:
    try:
        throttle.check(user, password, client)
    except HTTPException as error:
        assert error.status_code == 429 and "Too many failed logins" in error.detail
        return True
    return False


def test_wrong_passwords_lock_the_pair_out_for_a_doubling_time():
    clock = Clock()
    throttle = LoginThrottle({"ann": "correct-horse"}, clock)
    for _ in range(FREE_FAILURES):
        assert throttle.check("ann", "guess", "1.2.3.4") is False
    assert locked(throttle, "ann", "correct-horse", "1.2.3.4")  # even the right password waits
    assert throttle.check("ann", "correct-horse", "5.6.7.8") is True  # another client is not locked
    clock.now += FIRST_LOCK_S + 0.1
    assert throttle.check("ann", "guess", "1.2.3.4") is False
    clock.now += FIRST_LOCK_S + 0.1
    assert locked(throttle, "ann", "guess", "1.2.3.4")  # the second lock is twice as long
    clock.now += FIRST_LOCK_S + 0.1
    assert throttle.check("ann", "correct-horse", "1.2.3.4") is True
    assert throttle.check("ann", "guess", "1.2.3.4") is False  # a right password cleared the count


def test_thirty_guesses_are_mostly_refused_unchecked_and_the_lock_is_capped():
    clock = Clock()
    throttle = LoginThrottle({"ann": "correct-horse"}, clock)
    refused = sum(locked(throttle, "ann", f"guess-{k}", "1.2.3.4") for k in range(30))
    assert refused == 30 - FREE_FAILURES
    for _ in range(40):
        clock.now += MAX_LOCK_S + 1
        throttle.check("ann", "guess", "1.2.3.4")
    _, until = throttle.failures[("ann", "1.2.3.4")]
    assert until - clock.now == MAX_LOCK_S


def test_unknown_users_and_odd_passwords_are_just_wrong():
    throttle = LoginThrottle({"ann": "correct-horse"})
    assert throttle.check("nobody", "correct-horse", "c") is False
    assert throttle.check("ann", "\ud800", "c") is False


def test_the_login_gradio_awaits_reads_the_client_the_guard_set():
    throttle = LoginThrottle({"ann": "pw"}, Clock())
    assert inspect.iscoroutinefunction(throttle.login)  # how Gradio decides to await it; else any password passes

    async def tries():
        CLIENT.set("9.9.9.9")
        return [await throttle.login("ann", "bad") for _ in range(FREE_FAILURES)]

    assert asyncio.run(tries()) == [False] * FREE_FAILURES
    assert ("ann", "9.9.9.9") in throttle.failures
    with pytest.raises(HTTPException):
        throttle.check("ann", "pw", "9.9.9.9")
