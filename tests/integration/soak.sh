#!/bin/bash
# soak.sh: the soak test at CI size: two workers, 150 rounds each of webhooks, deploys, failing deploys, hook timeouts, reloads, rollbacks and resumes, with descriptors, threads, children, zombies and PSS sampled (tests/soak.sh).
# timeout: 600
#
# Long runs: SOAK_JOBS=J tests/soak.sh DEPLOYD_BIN ROUNDS (about one deploy for every two rounds of each worker).
# SOAK_ROUNDS overrides the count here.
export SOAK_SAMPLE=${SOAK_SAMPLE:-30} SOAK_JOBS=${SOAK_JOBS:-2}
exec bash "$(dirname "$0")/../soak.sh" "$DEPLOYD_BIN" "${SOAK_ROUNDS:-150}"
