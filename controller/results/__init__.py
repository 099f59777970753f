"""The results store (SQLite or PostgreSQL), its migrations, and results as pandas frames."""
