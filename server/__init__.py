"""kefu server."""
