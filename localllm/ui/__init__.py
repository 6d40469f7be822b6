"""The Textual TUI. Everything here may import textual; nothing in the core imports this. It shows what the
core computed: app.py routes keys and screens, screens/chat_screen.py is the chat, and no module here imports
localllm.machine (its facts come through localllm.chat.machine_facts)."""
