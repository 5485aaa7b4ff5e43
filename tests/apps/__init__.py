"""Small apps and helpers that the subprocess tests start in other Python processes."""
