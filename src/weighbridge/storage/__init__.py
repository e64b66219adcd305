"""Where runs live: the one migration runner (SQLite and Postgres) and the run store."""
