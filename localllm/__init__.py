"""localllm: run local quantized LLMs in the terminal, with live run metrics."""

__version__ = "0.1.0"
