"""Helpers every layer may use and that know nothing of tasks, models or strategies: checked file
reading and atomic writing, progress output, typed options, name suggestions."""
