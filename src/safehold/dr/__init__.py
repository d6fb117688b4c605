"""Recovery: the policy (safehold.toml and its plan); later drills, RTO/RPO, standbys."""
