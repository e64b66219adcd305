"""Backends turn one request into one Generation; the engine never knows which kind it talks to."""

from .base import Backend, Generation, Request, Timings, build_backend

__all__ = ["Backend", "Generation", "Request", "Timings", "build_backend"]
