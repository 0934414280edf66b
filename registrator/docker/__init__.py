"""The Docker edge: read-only calls (inspect, list, events) and turning their JSON into snapshots."""
