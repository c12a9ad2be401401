"""The bottom layer: settings, permissions, request models and the step catalogue's types; it imports nothing above it."""
