"""The OpenAI-compatible gateway: routes each request to the upstreams its plan names."""
