"""Queries and rules of the accounts domain, one module per aggregate.

``users``, ``cohorts``, ``enrolments`` (and the CSV import), ``join_links``, ``class_sessions``;
each depends only on those listed before it. Callers use this package's names.
"""

from appliance.accounts.services.class_sessions import (
    class_session_out,
    create_class_session,
    end_live_session,
    list_class_sessions,
    live_class_session,
    start_live_session,
)
from appliance.accounts.services.cohorts import (
    archive_cohort,
    cohort_out,
    create_cohort,
    get_cohort,
    update_cohort,
)
from appliance.accounts.services.enrolments import (
    MAX_IMPORT_ROWS,
    cohort_detail,
    enrol,
    import_learners,
    members,
    require_learner,
    unenrol,
)
from appliance.accounts.services.join_links import (
    cohorts_of,
    dead_links,
    expire_links,
    expired_links,
    export_links_csv,
    hash_secret,
    issue_link,
    issue_many,
    link_statuses,
    live_link_pairs,
    resolve_link,
    revoke_links,
    users_whose_link_expired,
)
from appliance.accounts.services.users import (
    create_user,
    get_user,
    normalise_email,
    update_user,
    user_out,
)
from appliance.clock import utcnow  # tests and callers read the clock links are checked by

__all__ = [
    "MAX_IMPORT_ROWS",
    "archive_cohort",
    "class_session_out",
    "cohort_detail",
    "cohort_out",
    "cohorts_of",
    "create_class_session",
    "create_cohort",
    "create_user",
    "dead_links",
    "end_live_session",
    "enrol",
    "expire_links",
    "expired_links",
    "export_links_csv",
    "get_cohort",
    "get_user",
    "hash_secret",
    "import_learners",
    "issue_link",
    "issue_many",
    "link_statuses",
    "list_class_sessions",
    "live_class_session",
    "live_link_pairs",
    "members",
    "normalise_email",
    "require_learner",
    "resolve_link",
    "revoke_links",
    "start_live_session",
    "unenrol",
    "update_cohort",
    "update_user",
    "user_out",
    "users_whose_link_expired",
    "utcnow",
]
