"""What the accounts domain announces when someone loses access, through Litestar's events.

Controllers call ``request.app.emit(EVENT, ...)`` after the change is committed; other parts
(the live classroom) listen with ``litestar.events.listener`` and act, e.g. close sockets.
The accounts domain knows nothing of who listens. Arguments are keywords, as listed here.
"""

from __future__ import annotations

__all__ = ["COHORT_ARCHIVED", "ENROLMENT_ENDED", "LINKS_REVOKED", "USER_DEACTIVATED"]

USER_DEACTIVATED = "accounts.user_deactivated"
"""``user_id``: the account was deactivated (archived); its sessions are over."""

ENROLMENT_ENDED = "accounts.enrolment_ended"
"""``cohort_id``, ``user_id``: the user is no longer enrolled in the cohort."""

LINKS_REVOKED = "accounts.links_revoked"
"""``user_ids`` (a list, or None for "maybe anyone"): join links of these learners were revoked
or replaced, so the sessions opened with them are over."""

COHORT_ARCHIVED = "accounts.cohort_archived"
"""``cohort_id``: the cohort was archived; learners no longer see it."""
