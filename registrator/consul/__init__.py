"""The Consul edge: the only writes the agent makes, through python-consul2."""
