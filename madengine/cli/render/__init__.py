"""Rich renderables built from core data; commands print them, core never does.

One module per stage: `common` (errors, discovery), `build`, `run`.
"""
