"""The operator dashboard: routes, queries, view models, charts, formatters and templates."""
