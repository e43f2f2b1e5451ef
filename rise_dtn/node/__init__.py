"""Node services: send, toss, xfer, stat, check. Each takes `now` and paths; no printing."""
