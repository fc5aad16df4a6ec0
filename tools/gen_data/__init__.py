"""Modules of tools/gen_data.py: pool, tasks, respond, build, check."""
