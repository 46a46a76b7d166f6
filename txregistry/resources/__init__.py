"""The HTTP layer: twisted.web resources over the registry's domain."""
