"""captionbot: self-hosted image captioning for Discord (shared formats, settings and the CLI)."""

__version__ = "0.1.0"
