"""Benchmarks: run each module as a script (see its docstring)."""
