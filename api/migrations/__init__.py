"""Versioned schema migrations: ``NNNN_slug.py`` files, each with ``upgrade(db)``."""
