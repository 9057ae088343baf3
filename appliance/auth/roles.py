"""Who may do what in a cohort: the role sets that routes and socket messages allow.

:func:`appliance.auth.guards.cohort_access` checks a user's capacity in a cohort against one
of these; the socket's dispatcher checks every message's sender the same way.
"""

from __future__ import annotations

from appliance.accounts.tables import Role

__all__ = [
    "ADMINS",
    "EVERYONE",
    "LEARNERS",
    "OPERATES",
    "RATE_LIMITED",
    "RUNS_CLASS",
    "SEES_STAFF_VIEW",
    "TAKES_PART",
]

EVERYONE = frozenset(Role)
ADMINS = frozenset({Role.admin})
LEARNERS = frozenset({Role.learner})
RUNS_CLASS = frozenset({Role.trainer, Role.admin})
"""Teach the class: sessions, polls, chat moderation, signing windows, documents, media."""
SEES_STAFF_VIEW = RUNS_CLASS | {Role.operator}
"""See what staff see (results, attendance, the staff channel); operators only watch."""
TAKES_PART = RUNS_CLASS | LEARNERS
"""Write in the class (chat) and open its documents."""
OPERATES = frozenset({Role.operator, Role.admin})
"""Look after the server (the operator page)."""
RATE_LIMITED = EVERYONE - RUNS_CLASS
"""Capacities whose messages are rate-limited: those who do not run the class."""
