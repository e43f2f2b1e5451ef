"""Carriers move opaque bundle bytes between nodes; they never open bundle bodies."""
