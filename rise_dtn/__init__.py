"""rise-dtn: store-and-forward, delay-tolerant, encrypted messaging."""

__version__ = "0.1.0"
