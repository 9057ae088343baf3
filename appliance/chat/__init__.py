"""Chat messages, questions with their +1 votes, and mutes."""

__all__: list[str] = []
