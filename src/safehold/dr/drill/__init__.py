"""Disaster-recovery drills: a recovery into a sandbox by the whole-service engine
(``dr/recovery/``), verified, measured against the objectives, reported, torn down.

``point.py`` chooses the point, ``sandbox.py`` makes the sandbox and refuses any overlap
with the live service, ``checks.py`` holds the built-in data checks of each kind,
``measure.py`` the achieved RPO, ``run.py`` carries a drill out, ``report.py`` is its
record (JSON and HTML) and ``store.py`` keeps reports in the state directory and the
repository.
"""
