"""Reports of a stored run: terminal tables, JSON and a single-file HTML page."""
