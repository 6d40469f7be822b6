"""What this machine has and what fits on it: the hardware probe (cpu.py the CPU, gpu.py the only
module that opens NVML), memory bandwidth, the memory estimate and the recommendation."""
