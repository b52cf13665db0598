"""`captionbot run` with no token: a person opens the local page, posts a photo into #alt-text, sees the reply."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_make_run_serves_a_page_where_a_posted_photo_gets_a_caption_and_heatmap(
        data_dir: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    try:
        model = ["--bundle", str(request.getfixturevalue("caption_bundle"))]
    except pytest.FixtureLookupError:
        model = ["--test-model", "null"]
    env = {k: v for k, v in os.environ.items() if k not in ("DISCORD_TOKEN", "CAPTIONBOT_DISCORD_TOKEN",
                                                            "CAPTIONBOT_REDIS_URL")}
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "captionbot.cli", "run", "--port", str(free_port()), *model],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        async with asyncio.timeout(30):
            while not (m := re.search(r"open (http://\S+)/ ", log.read_text())):
                assert proc.poll() is None, log.read_text()[-3000:]
                await asyncio.sleep(0.1)
        url = m.group(1)
        photo = sorted((data_dir / "flickr8k" / "images").glob("*.jpg"))[0]
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/") as resp:
                assert resp.status == 200 and "<form" in await resp.text()
            state = await (await http.get(url + "/_standin/state")).json()
            assert state["bot_connected"]
            channel = next(c["id"] for c in state["channels"] if c["name"] == "alt-text")
            form = aiohttp.FormData()
            form.add_field("user", "alice")
            form.add_field("mode", "post")
            form.add_field("file", photo.read_bytes(), filename=photo.name, content_type="image/jpeg")
            await http.post(f"{url}/_standin/channels/{channel}/messages", data=form)
            async with asyncio.timeout(30):
                while True:
                    messages = await (await http.get(f"{url}/_standin/channels/{channel}/messages")).json()
                    if any(m["bot"] for m in messages):
                        break
                    await asyncio.sleep(0.2)
        [reply] = [m for m in messages if m["bot"]]
        assert reply["content"].startswith("Image description: ") and reply["reply_to"] == messages[0]["id"]
        assert [a["filename"] for a in reply["attachments"]] == ["heatmap.png"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode == 0
