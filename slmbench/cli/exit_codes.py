"""The exit codes of ``slmbench``: 0 every trial ok (or the command succeeded); 1 the run finished but
some trials failed; 2 bad input (nothing was run); 3 every trial of the run failed; 130 interrupted
(finished trials and the report are kept)."""

EXIT_OK, EXIT_SOME_FAILED, EXIT_INPUT, EXIT_ALL_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
