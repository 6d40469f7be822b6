"""The Hugging Face Hub through huggingface_hub: what a repo holds and which files to fetch
(repos.py), and resumable downloads with progress and cancel (download.py)."""
