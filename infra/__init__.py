"""Deployable stacks of the default app."""
