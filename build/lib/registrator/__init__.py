"""Docker → Consul service registrator: keeps a Consul agent's services equal to running containers."""

__version__ = "0.1.0"
