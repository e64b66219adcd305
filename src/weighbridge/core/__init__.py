"""The types and helpers every layer shares: the one exception tree, config models and prices, hashing,
the secret scrubber, bounded file and YAML readers, the GGUF reader, processes, "is this local",
and the machine's load."""
