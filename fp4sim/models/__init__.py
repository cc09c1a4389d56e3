"""Model helpers: local checkpoints (loading, accelerate offload), sliding-window perplexity, zero-shot tasks, and
encoders' inputs (lines of text, image folders, sentence-transformers pooling) and metrics."""

BATCH_SIZE = 8  # windows per forward pass: perplexity, zero-shot tasks and the CLI's default
