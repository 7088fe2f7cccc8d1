"""The built-in detectors (registered through detect/registry.py like any plug-in)."""
