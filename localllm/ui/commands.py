"""The command palette's entries after Textual's own, in the order shown: (title, help, the app's method it
calls). A table of its own so the app module keeps to routing."""

from __future__ import annotations

COMMANDS = [
    ("Stop reply", "Stop the reply being generated (Esc)", "action_stop"),
    ("Regenerate", "Answer the last message again (Ctrl+R)", "action_regenerate"),
    ("Copy reply", "Copy the last reply to the clipboard (Ctrl+Y)", "action_copy_reply"),
    ("New chat", "Start a new conversation (Ctrl+N)", "action_new_chat"),
    ("Export conversation", "This conversation as Markdown in the exports folder, saved or not",
     "action_export_conversation"),
    ("Compare models", "The prompt being typed, on several models side by side (Ctrl+E)", "open_compare"),
    ("Load model", "Load a GGUF file; the conversation is kept (Ctrl+O)", "action_open_model"),
    ("Worker log", "Show the model worker's log (Ctrl+G)", "action_show_log"),
    ("Keys", "Every key binding (F1)", "action_help"),
    ("Settings", "Model, context, sampling, theme defaults (F2)", "action_settings"),
    ("History", "Saved conversations: open, rename, delete, export (F3)", "action_history"),
    ("Timing runs", "Side-by-side timing of models and quants, with charts (F5)", "action_bench"),
    ("Quantize", "Make a GGUF quant, a full-precision checkpoint or a GPTQ model (F6)", "action_quantize"),
    ("Hardware and recommendations", "This machine and the models that fit it; Enter downloads a pick (F4)",
     "action_hardware"),
]
