"""The Discord adapter (discord.py): translate, outbox, views, cogs, app, run."""
