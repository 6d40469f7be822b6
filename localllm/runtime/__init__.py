"""How a model runs here: the worker process and its typed protocol, the meter (metrics; the
process it measures and the worker's Python in model_process, its figures as text in figures), the
binding probe (what the llama.cpp build can do on this CPU/GPU), the load plan, the GPTQ environment
and doctor. Nothing here imports the ML libraries; worker_main loads them in the child process."""
