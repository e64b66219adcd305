"""``weighbridge view``: a local web app over the store – runs over time, one run, two runs
compared, a model's trend, load tests side by side. Loopback only, no CDN, read-only."""

from .app import create_view_app

__all__ = ["create_view_app"]
