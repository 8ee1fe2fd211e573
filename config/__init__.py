"""Settings shared by every Lore package. Imports nothing else from Lore."""

from config.loader import ConfigError, load_settings
from config.settings import Settings

__all__ = ["ConfigError", "Settings", "load_settings"]
