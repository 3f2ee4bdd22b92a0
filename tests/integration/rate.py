"""Runs a test module asks for in a row, faster than the home's rate for the method
refills (Train: 1 a second, bursts of 20): a refusal for the rate is waited out as its
hint says (CI saw one on a quick machine). The rate itself: test_limits.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import grpc

from gateway.client import ClientError

T = TypeVar("T")


def within_rate(call: Callable[[], T], tries: int = 5) -> T:
    for _ in range(tries - 1):
        try:
            return call()
        except ClientError as exc:
            wait = exc.details.get("retry_after_seconds")
            if exc.code != grpc.StatusCode.RESOURCE_EXHAUSTED or wait is None:
                raise
            time.sleep(float(wait) + 0.05)
    return call()
