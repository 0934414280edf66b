"""Pure: a container snapshot and the settings → the services it should have. No I/O in this package."""
