"""captionbot: bot."""
