"""Error types shared by the schema and its checks (growth/validate.py imports the schema; the schema never imports its checks)."""


class ConfigValueError(ValueError):
    """A config value the schema rejects; the message names the key and the valid values."""
