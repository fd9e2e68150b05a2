"""Data: loaders for canonical formats, tokenizers, batching."""
