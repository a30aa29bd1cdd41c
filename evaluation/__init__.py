"""Offline evaluation and promotion gates, canary analysis, drift detection."""
