#!/usr/bin/env bash
# A short soak of the join service (scripts/soak-load at a size for every `make check`): 12
# simulated agents, each with its own swtpm, against the real conclave-joind for 30 s of churn
# (leaves and returns with new keys, a late join, revocations). Asserts that no update was lost
# (every agent's view equals joind's store), no descriptor leaked and memory stayed within a
# generous bound of the run's own start. No timing thresholds. Prints TAP.
root=${CONCLAVE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${CONCLAVE_BUILD:-$root/build}
exec "$root/scripts/soak-load" "$build" "${SOAK_AGENTS:-12}" "${SOAK_SECONDS:-30}"
