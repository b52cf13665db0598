#!/usr/bin/env python3
"""Container health check: ``captionbot-healthcheck [/healthz|/readyz]``.

Asks the process's own metrics/health HTTP server (``http://127.0.0.1:$CAPTIONBOT_METRICS_PORT<path>``) and exits
0 on HTTP 200, 1 otherwise. Standard library only, so the same file works in the bot, CPU-worker and GPU-worker
images (none of which ship curl or wget). Docker ``HEALTHCHECK`` and compose use ``/healthz`` (alive);
Kubernetes probes ask the server directly (``httpGet``).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 3.0


def check(path: str = "/healthz") -> tuple[bool, str]:
    """(healthy?, one line saying why) for ``path`` on this container's health port."""
    port = int(os.environ.get("CAPTIONBOT_METRICS_PORT") or 0)
    if port <= 0:
        return False, "CAPTIONBOT_METRICS_PORT is unset or 0: this process serves no health endpoint"
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return response.status == 200, f"{url}: HTTP {response.status}"
    except urllib.error.HTTPError as exc:  # 503 from /readyz while not ready, for example
        return False, f"{url}: HTTP {exc.code}"
    except OSError as exc:  # refused, timed out, reset
        return False, f"{url}: {exc}"


def main(argv: list[str]) -> int:
    healthy, why = check(argv[1] if len(argv) > 1 else "/healthz")
    print(why, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
