"""The language-model toolkit: loading the shared models, the scoring engine, prompts and
calibration, retrieval, fine-tuning, bottleneck adapters, quantized copies and memory. It knows
tasks, not strategies: the strategy API builds on it, never the other way round."""
