"""GPU inventory, memory estimates, placement, quotas and prices."""
