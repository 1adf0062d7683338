"""Which refresh outcomes count as "something failed" for exit codes and scripts.

A selection is a success when every item ended in one of OK_OUTCOMES: the link works now (refreshed,
unchanged, alive), or there was nothing to do yet (cooldown, in progress, a dry run's would_refresh). Anything
else, including an outcome added later and not listed here, is a failure: cron must hear about it.
"""
from __future__ import annotations

OK_OUTCOMES = frozenset({"refreshed", "unchanged", "alive", "cooldown", "would_refresh", "in_progress",
                         "not_owned", "own_link"})  # a stable link left alone: nothing to do, nothing failed


def is_failure(outcome: str) -> bool:
    return outcome not in OK_OUTCOMES
