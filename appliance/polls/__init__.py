"""Polls prepared by trainers, launched live, their ballots and results."""

__all__: list[str] = []
