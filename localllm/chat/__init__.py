"""A conversation with a loaded model: the session (load, reply, stop, the events a reply makes),
the calibration it keeps after each reply, the saved conversations, the recorder that writes them, the
plain-text reports of the meter, compare (one prompt on several models, one after another, side by
side), and machine_facts (what the TUI shows of this machine: the ui package imports no machine module)."""
