"""Widgets get plain data; they never call a backend."""
