#!/usr/bin/env bash
# Soak: a real `mandate serve` process (release build) under steady
# `Authorize` load while tasks in use are revoked and the policy set is
# reloaded; exits non-zero on any violation. The driver is
# benches/soak/main.rs; see BENCHMARKS.md ("Soak") for a run's figures.
#
# Knobs (environment, passed on to the driver):
#   SOAK_SECONDS             length of the run (default 60)
#   SOAK_WARMUP_SECONDS      the RSS baseline is taken after this long
#                            (default 30) and not before the server's audit
#                            index is full (SOAK_AUDIT_INDEX_ENTRIES
#                            decisions, its default 100000), nor before
#                            ended tasks begin to leave memory (the default
#                            task retention, 300 s, and a 30 s sweep): it
#                            grows until then by design. Memory is judged
#                            only when the run goes on 30 s past that.
#   SOAK_CONNECTIONS         the patcher agent's mTLS connections (4)
#   SOAK_CONCURRENCY         Authorize calls in flight, closed loop (16)
#   SOAK_TASKS               tasks in use at once (8)
#   SOAK_REVOKE_MS           one task in use revoked every N ms (250)
#   SOAK_LINGER_MS           a revoked token stays in use this long after
#                            the revoke's acknowledgement (50)
#   SOAK_RELOAD_MS           one policy reload every N ms (5000)
#   SOAK_MAX_RSS_GROWTH_PCT  most RSS growth after warm-up that counts as
#                            stable (10)
#
# Example: SOAK_SECONDS=300 scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export SOAK_SECONDS="${SOAK_SECONDS:-60}"
exec cargo bench --quiet --bench soak
