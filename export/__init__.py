"""captionbot: export."""
