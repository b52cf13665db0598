"""captionbot: inference."""
