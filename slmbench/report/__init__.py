"""The decision report, rendered from the run folder's records alone (``slmbench.records``): it
imports nothing that loads a model or runs a trial."""
