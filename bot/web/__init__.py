"""Lore's web app: health, metrics, Slack HTTP mode, and the web console."""
