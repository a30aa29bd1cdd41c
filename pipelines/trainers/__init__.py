"""Trainers for the bundled models: tiny-gpt and credit-risk."""
