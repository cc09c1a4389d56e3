"""Model helpers: local checkpoints (loading, accelerate offload), sliding-window perplexity, zero-shot tasks."""

BATCH_SIZE = 8  # windows per forward pass: perplexity, zero-shot tasks and the CLI's default
