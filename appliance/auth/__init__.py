"""Sign-in, sessions, join links and the guards every route and socket message uses."""

from appliance.auth.guards import (
    Access,
    cohort_access,
    require_roles,
    user_from_connection,
)

__all__ = ["Access", "cohort_access", "require_roles", "user_from_connection"]
