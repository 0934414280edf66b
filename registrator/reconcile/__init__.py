"""Level-triggered reconcile: the work queue, the local view of Consul, the reconciler and the controller around them."""
