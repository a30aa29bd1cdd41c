"""The gateway: authentication, routing, champion/challenger split, limits, metrics."""
