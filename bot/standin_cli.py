"""``captionbot standin``: the local Discord stand-in on its own (page at ``/``, faults at ``/_standin/faults``).

Then run ``captionbot bot --standin http://127.0.0.1:PORT`` (with workers on the same Redis) to connect a bot.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: $CAPTIONBOT_STANDIN_PORT)")
    parser.add_argument("--public-url", default=None,
                        help="the URL the bot uses to reach this server, when not http://HOST:PORT "
                             "(e.g. http://standin:8765 on a container network)")
    parser.add_argument("--guilds", type=int, choices=(1, 2), default=1,
                        help="2 adds a second guild, on shard 1 of 2 (shard 0 has the first): for a sharded bot")


def main(args: argparse.Namespace) -> int:
    from captionbot.process import run_service
    from captionbot.settings import load_settings

    port = args.port if args.port is not None else load_settings().standin_port
    return run_service("standin", lambda stop: serve(args.host, port, stop, args.public_url, args.guilds))


async def serve(host: str, port: int, stop: asyncio.Event, public_url: str | None = None, guilds: int = 1) -> int:
    from captionbot.bot.standin import StandIn

    standin = StandIn(host=host, port=port, public_url=public_url, guilds=guilds)
    await standin.start()
    print(f"Discord stand-in at {standin.base_url}/  (connect a bot: captionbot bot --standin {standin.base_url})",
          flush=True)
    await stop.wait()
    await standin.stop()
    return 0
