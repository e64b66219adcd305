"""Agent episodes: a model calling tools against a stateful environment, turn after turn. The
environment lives in a sandboxed process of its own (``sandboxed.py``, running ``envhost.py``)."""
