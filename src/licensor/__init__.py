"""Licensor: a self-hosted software-licensing server and the client library applications embed."""

__version__ = "0.1.0"
