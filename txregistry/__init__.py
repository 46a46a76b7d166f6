"""txregistry: a container image registry on Twisted."""

__version__ = "0.1.0"
