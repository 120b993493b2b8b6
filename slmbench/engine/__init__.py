"""The engine: what a run is asked to do (``run_options``), its plan (``planning``), carrying it out
(``runner``, on an executor from ``executors``: local or Ray), sweep files (``sweep``), and one trial
(``trial``): fitting with or without the option search (``fitting``, ``tuning``), the checks and
record form of predictions (``predictions``), costs and latency (``serving``), combining strategies
(``members``), the time limit (``trial_timeout``), the shared models loaded once per process
(``model_cache``), metrics and the environment. After the trials: the deployment check of the
contenders (``deployment_check``) and the export check (``export_check``); the report rendered
again after every trial (``live_report``)."""
