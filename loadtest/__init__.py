"""kefu loadtest."""
