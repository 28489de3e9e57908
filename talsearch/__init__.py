"""The talsearch command line: a thin top layer over tal_core, search and ensemble (nothing imports it)."""
