"""Whole-service recovery at one moment, the engine that ``recover`` and drills share.

``plan.py`` decides everything first (which snapshot, which log target, which path and
port, per source), ``steps.py`` carries the plan out step by step into one ``report.py``
record, ``health.py`` runs the checks, ``state.py`` keeps a recovery resumable and
``teardown.py`` stops and removes what a sandboxed recovery brought up.
"""
