"""Quantization on this machine: GGUF re-quantization with llama.cpp's quantizer (gguf.py), the
jobs that make a quantized model (jobs.py), and the child-process entry points of the GPTQ and
dequantize jobs (they import the ML libraries, in a process of their own)."""
