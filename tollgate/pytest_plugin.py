"""tollgate's pytest plugin (placeholder while it is being written)."""
