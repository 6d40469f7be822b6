"""The run options' defaults and choices as plain values. The CLI's parser builds its help strings from
these without importing dataclasses (≈10 ms of `localllm --help`'s start-up); options.py's dataclasses
take their defaults from here, so each value is written once."""

KV_TYPES = ("f16", "q8_0", "q4_0")  # llama.cpp KV-cache types offered (quantized ones need flash attention)
EXTRA_BUFFERS = ("auto", "on", "off")  # choices of LoadOptions.extra_buffers and the setting
# the backends by name, in the order settings offer them (backends.registry has their implementations)
BACKEND_NAMES = ("llama_cpp", "remote", "transformers")
AUTO_LAYERS = -2  # gpu_layers: placed by the load plan (localllm.runtime.plan)

CONTEXT = 2048
KV_TYPE = "f16"
# SamplingParams' defaults: the app's own, used where neither the user nor the model says otherwise
TEMPERATURE = 0.7
TOP_P = 0.95
TOP_K = 40
MIN_P = 0.05
REPEAT_PENALTY = 1.1
MAX_TOKENS = 512
