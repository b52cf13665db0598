"""The bot process stays light: none of its modules (nor the queue client it uses) loads torch or onnxruntime, nor
the model-side packages (inference, training, export) that the bot's image does not ship (deploy/Dockerfile.bot)."""

from __future__ import annotations

import subprocess
import sys

MODULES = ["captionbot.bot.runner", "captionbot.bot.captions", "captionbot.bot.alttext", "captionbot.bot.stats",
           "captionbot.bot.services", "captionbot.bot.standin", "captionbot.bot.bot_cli", "captionbot.bot.run_cli",
           "captionbot.bot.standin_cli", "captionbot.queue.client", "captionbot.queue.worker", "captionbot.process"]


def test_bot_modules_import_neither_torch_nor_onnxruntime() -> None:
    code = (f"import sys, importlib; [importlib.import_module(m) for m in {MODULES!r}]; "
            "print(sorted(m for m in sys.modules if m in ('torch', 'onnxruntime') or m.split('.')[:2] in "
            "(['captionbot', 'inference'], ['captionbot', 'training'], ['captionbot', 'export'])))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
