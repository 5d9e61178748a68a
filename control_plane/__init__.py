"""control_plane package."""
