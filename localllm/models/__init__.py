"""What a model is: the embedded default, GGUF and checkpoint inspection, the one quant table,
the local library, the catalog of recommendable models and OpenAI-compatible server endpoints."""
