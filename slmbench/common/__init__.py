"""Helpers every layer may use and that know nothing of tasks, models or strategies: checked file
reading, progress output, typed options, wording of messages (plurals, did-you-mean)."""
