"""Checks of what an artifact must contain, shared by the steps that produce artifacts."""
