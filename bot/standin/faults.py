"""Fault injection for the stand-in: REST 429s and 5xx by route, slow CDN downloads.

A REST fault matches a route key such as ``"POST /channels/{channel_id}/messages"`` (or ``"*"``) and answers the
next ``times`` matching requests instead of the real handler. 429s carry Discord's ``Via`` header and JSON body,
so discord.py treats them as Discord rate limits (without ``Via`` it assumes a Cloudflare ban and gives up).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class RestFault:
    route: str
    status: int
    times: int
    retry_after: float = 0.0
    hits: int = 0

    def response(self) -> web.Response:
        if self.status == 429:
            body = {"message": "You are being rate limited.", "retry_after": self.retry_after, "global": False,
                    "code": 0}
            headers = {"Content-Type": "application/json", "Via": "1.1 google", "X-RateLimit-Scope": "user",
                       "Retry-After": str(max(1, round(self.retry_after)))}
            return web.Response(status=429, body=json.dumps(body).encode(), headers=headers)
        body = {"message": "stand-in: injected server error", "code": 0}
        return web.Response(status=self.status, body=json.dumps(body).encode(),
                            headers={"Content-Type": "application/json"})


@dataclass
class Faults:
    rest: list[RestFault] = field(default_factory=list)
    cdn_chunk_delay_s: float = 0.0  # > 0: the CDN sends 16 KiB, sleeps this long, sends the next 16 KiB, ...

    def rate_limit(self, route: str = "*", times: int = 1, retry_after: float = 0.2) -> RestFault:
        fault = RestFault(route, 429, times, retry_after)
        self.rest.append(fault)
        return fault

    def server_error(self, route: str = "*", times: int = 1, status: int = 502) -> RestFault:
        fault = RestFault(route, status, times)
        self.rest.append(fault)
        return fault

    def slow_cdn(self, chunk_delay_s: float) -> None:
        self.cdn_chunk_delay_s = chunk_delay_s

    def take(self, route: str) -> RestFault | None:
        """The fault that answers this request, if any (counts it)."""
        for fault in self.rest:
            if fault.hits < fault.times and fault.route in ("*", route):
                fault.hits += 1
                return fault
        return None

    def clear(self) -> None:
        self.rest.clear()
        self.cdn_chunk_delay_s = 0.0
