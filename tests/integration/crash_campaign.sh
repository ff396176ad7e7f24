#!/bin/bash
# crash_campaign.sh: the crash campaign at CI size: 50 SIGKILLs at random instants of real deploys (tests/crash-campaign.sh).
# timeout: 330
#
# Every kill is followed by a restart and an exact check of current against the commit's
# tree; see tests/crash-campaign.sh for what is checked and for long runs
# (tests/crash-campaign.sh DEPLOYD_BIN 500). CRASH_KILLS overrides the count here.
# On a loaded machine (the ASan build beside other work) a deploy of 2,000 files can take
# seconds, so the limit may come first: 20 kills still cover every phase, and each kill is
# checked all the same.
export CRASH_TIME_LIMIT=${CRASH_TIME_LIMIT:-240} CRASH_MIN_KILLS=${CRASH_MIN_KILLS:-20}
exec bash "$(dirname "$0")/../crash-campaign.sh" "$DEPLOYD_BIN" "${CRASH_KILLS:-50}"
