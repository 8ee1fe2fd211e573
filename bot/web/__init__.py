"""Lore's web app: health, Slack HTTP mode, and (later) the console."""
