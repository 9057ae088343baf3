"""Estrade: a self-hosted virtual classroom for vocational training."""

__version__ = "0.1.0"

__all__ = ["__version__"]
