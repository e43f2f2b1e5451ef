"""The spool on disk (the truth) and its SQLAlchemy index (a cache of it)."""
