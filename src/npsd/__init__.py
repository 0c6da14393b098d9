"""npsd: self-hosted Net Promoter Score service."""

__version__ = "0.1.0"
