"""Model backends: one class per engine behind one interface, each with its replica HTTP API."""
