"""Zoo family module (models registered here)."""
