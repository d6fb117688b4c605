"""restore's selection: include paths (also case-blind) and exclude patterns, which win."""

from __future__ import annotations

import pytest

from safehold.archive.restore_select import Selection
from safehold.errors import InvalidArgument


def test_includes_excludes_and_their_case_blind_forms() -> None:
    plain = Selection(["/srv/app"], ["*.tmp", "/srv/app/cache"])
    assert plain.of(b"/srv") == "descend" and plain.of(b"/etc") == "skip"
    assert plain.of(b"/srv/app/x") == "all" and plain.of(b"/srv/app/x.tmp") == "skip"
    assert plain.of(b"/srv/app/cache") == "skip" and plain.of(b"/srv/application") == "skip"
    blind = Selection(iincludes=["/SRV/App"], iexcludes=["*.TMP"])
    assert blind.of(b"/srv/app/a") == "all" and blind.of(b"/srv/app/a.tmp") == "skip"
    assert blind.of(b"/srv") == "descend" and blind.narrows
    assert Selection().of(b"/anything") == "all" and not Selection().narrows
    assert Selection(excludes=["x"]).of(b"/a/x") == "skip"


def test_bad_input_is_refused_up_front() -> None:
    with pytest.raises(InvalidArgument, match="must be an absolute path"):
        Selection(["srv"])
    with pytest.raises(InvalidArgument, match="invalid pattern"):
        Selection(excludes=["[z-a]"])
