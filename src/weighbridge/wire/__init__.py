"""The OpenAI wire layer: the HTTP client for hot paths and the bounds every upstream answer is read under."""
