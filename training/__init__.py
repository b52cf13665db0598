"""captionbot: training."""
