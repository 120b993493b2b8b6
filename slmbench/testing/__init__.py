"""A conformance kit for strategy authors: check a strategy against slmbench's protocol from pytest.

Two lines in a plugin's tests::

    from slmbench.testing import parametrize_with_checks

    @parametrize_with_checks([MyStrategy])
    def test_protocol(strategy, check):
        check(strategy)

(or ``check_strategy(MyStrategy)``, which runs every check and raises ``StrategyCheckError``). The
checks run the strategy through the real trial (``slmbench.engine.trial.run_trial``) on a tiny built-in
task, with tiny models built on the spot (a 2-layer Llama and a 2-layer BERT sentence encoder with
tokenizers trained on the task's words, no download), on the CPU, in seconds:

- ``check_registration``: name, description, family, options and search space as the registry wants
  them, and every value the search space can reach (range ends, choices) accepted by the options;
- ``check_light_import``: importing the strategy's module loads no heavy library (torch, transformers...);
- ``check_protocol``: a trial finishes ``ok``: one label in range per test text, probabilities of
  shape (texts, labels) summing to 1, plain-JSON ``details``, parameter counts, no pickle among the
  saved artifacts, and the shared models it calls named in ``metadata.calls`` (and no others);
- ``check_reproducible``: the same seed gives the same predictions and probabilities;
- ``check_many_labels``: a trial on a 20-label task with one validation example of some labels and
  none of others finishes ``ok`` (degrade to what the data allows, and say so);
- ``check_reusable``: a strategy that implements ``save`` and ``load`` (both, or neither), reloaded from
  its trial's artifacts by a new instance as ``slmbench predict`` does, predicts the test split exactly
  as the trial did (the same labels, the same probabilities to the record's 5 places).

A ``CombiningStrategy`` (an ensemble) is checked on trials of two toy members (``TOY_MEMBERS``).

``tiny_models``, ``toy_task_files`` and ``make_context`` are the same pieces, for a plugin's own tests
(``tiny_llama`` builds the tiny causal LM for a tokenizer of your own, ``tiny_causal_lm`` one of the
Llama, Phi-3 or Qwen2 architecture, ``tiny_causal_lm_folder`` a ``--model`` folder of one;
``tiny_base_lm_folder`` a tiny base model, a Gemma 3 whose tokenizer has no chat template, for the
completion prompt format).
"""

from slmbench.testing.checks import (
    HEAVY_MODULES,
    StrategyCheckError,
    check_light_import,
    check_many_labels,
    check_protocol,
    check_registration,
    check_reproducible,
    check_reusable,
    check_strategy,
    parametrize_with_checks,
    pickled_files,
    run_toy_trial,
)
from slmbench.testing.toys import (
    TOY_MEMBERS,
    make_context,
    many_labels_task_files,
    tiny_base_lm_folder,
    tiny_causal_lm,
    tiny_causal_lm_folder,
    tiny_llama,
    tiny_models,
    toy_rows,
    toy_splits,
    toy_task_files,
)

__all__ = [
    "HEAVY_MODULES",
    "TOY_MEMBERS",
    "StrategyCheckError",
    "check_light_import",
    "check_many_labels",
    "check_protocol",
    "check_registration",
    "check_reproducible",
    "check_reusable",
    "check_strategy",
    "make_context",
    "many_labels_task_files",
    "parametrize_with_checks",
    "pickled_files",
    "run_toy_trial",
    "tiny_causal_lm",
    "tiny_base_lm_folder",
    "tiny_causal_lm_folder",
    "tiny_llama",
    "tiny_models",
    "toy_rows",
    "toy_splits",
    "toy_task_files",
]
