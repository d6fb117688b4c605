"""The line of each key, found by scanning the text tomllib already accepted."""

from __future__ import annotations

import tomllib

from safehold.dr.tomlpos import find_line, key_lines

TEXT = '''\
# a comment with [brackets] and key = "value"
title = "x"
[repositories.main]
location = """
[not.a.table]
fake = 1
"""
password_file = '/etc/pw' # comment

[[services.sync.sources]]
name = "db"
options = { pgdata = "/pg", port = 5432 }
schedules.full = "0 2 * * *"

[services.sync.sources.options2]
x = 1

[[services.sync.sources]]
"quoted key" = 1
list = [
  "a",   # one
  { location = "s3://b", schedule = "after-backup" },
]
[services."web site".objectives]
rpo = "5m"
'''


def test_every_key_has_its_line() -> None:
    tomllib.loads(TEXT)  # the scanner assumes valid TOML
    lines = key_lines(TEXT)
    assert lines[("title",)] == 2
    assert lines[("repositories", "main")] == 3
    assert lines[("repositories", "main", "location")] == 4
    assert lines[("repositories", "main", "password_file")] == 8
    assert ("not", "a", "table") not in lines  # inside a multi-line string
    assert ("repositories", "main", "fake") not in lines
    assert lines[("services", "sync", "sources", 0)] == 10
    assert lines[("services", "sync", "sources", 0, "name")] == 11
    assert lines[("services", "sync", "sources", 0, "options", "port")] == 12
    assert lines[("services", "sync", "sources", 0, "schedules", "full")] == 13
    assert lines[("services", "sync", "sources", 0, "schedules")] == 13
    # a sub-table after [[...]] belongs to the array's last element
    assert lines[("services", "sync", "sources", 0, "options2", "x")] == 16
    assert lines[("services", "sync", "sources", 1)] == 18
    assert lines[("services", "sync", "sources", 1, "quoted key")] == 19
    assert lines[("services", "sync", "sources", 1, "list", 0)] == 21
    assert lines[("services", "sync", "sources", 1, "list", 1)] == 22
    assert lines[("services", "sync", "sources", 1, "list", 1, "schedule")] == 22
    assert lines[("services", "web site", "objectives", "rpo")] == 25


def test_a_key_not_in_the_text_falls_back_to_its_nearest_ancestor() -> None:
    lines = key_lines(TEXT)
    assert find_line(lines, ("services", "sync", "sources", 1, "name")) == 18
    assert find_line(lines, ("nothing", "here")) == 1
