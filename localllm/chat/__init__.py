"""A conversation with a loaded model: the session (load, reply, stop, the events a reply makes),
the saved conversations, the recorder that writes them, the plain-text reports of the meter, and
compare (one prompt on several models, one after another, side by side)."""
