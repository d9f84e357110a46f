"""The platform's REST API (FastAPI), built by :func:`create_app` from the settings."""

from transactive.platform.api.app import create_app

__all__ = ["create_app"]
