"""Load-testing an OpenAI-compatible endpoint: load generation, per-request records and metrics."""
