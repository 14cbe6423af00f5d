"""Error types shared by the schema and its checks (so growth/validate.py need not import the schema)."""


class ConfigValueError(ValueError):
    """A config value the schema rejects; the message names the key and the valid values."""
