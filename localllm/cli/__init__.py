"""The command line: `localllm` (main.py parses it and starts the TUI or a chat), and one module
per subcommand in commands/. The top layer: it may import every other package."""
