"""Fine-tuning machinery shared by every weight-updating strategy.

- ``batches``: examples to token rows (packed answer-token batches, padded batches), the losses and
  the soft prompt;
- ``setup``: ``TrainingSetup`` (how one strategy trains) and the precision and compile choices;
- ``train_loop``: ``train_model``, the budgeted loop with early stopping and the best checkpoint;
- ``hf_trainer``: the transformers ``Trainer`` subclass and the callback that monitors it.
"""
