"""What this machine has and what fits on it: the hardware probe (gpu.py is the only module
that opens NVML), memory bandwidth, the memory estimate and the recommendation."""
