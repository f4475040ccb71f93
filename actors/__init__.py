"""kefu actors."""
