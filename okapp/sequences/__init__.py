"""The sequence engine: templates, blocks, recruiting, waiting, splitting and the scheduler tick.

Pure logic over a SQLAlchemy session with the clock passed in; no Flask, no views, no jobs.
"""
