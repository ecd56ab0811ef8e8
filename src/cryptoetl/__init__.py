"""cryptoetl: crypto market data and news, ingested into PostgreSQL and served read-only."""

__version__ = "0.1.0"
