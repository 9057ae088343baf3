"""Users, cohorts, enrolments, class sessions and join links."""
