"""The Textual TUI. Everything here may import textual; nothing in the core imports this."""
