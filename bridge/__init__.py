"""eventfed bridge: ingest from OpenStack's bus, the CLI, settings and the state API."""

__version__ = "0.1.0"
