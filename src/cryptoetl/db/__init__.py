"""Database layer: table metadata (owned by Alembic migrations) and engine construction."""
