"""The engine: plans a run (``planning``), runs each trial (``trial``, with the option search of
``tuning`` and the shared ``model_cache``) on an executor (local or Ray, ``executors``), expands
sweep files (``sweep``) and writes the records, then asks the report layer to render them (``runner``)."""
