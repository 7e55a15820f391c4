"""Linkage review in the browser: resolve the MPI's review items through the console.

``caregraph demo`` does not mount the ``/linkage`` router yet, so these tests use the app
served in-process (``served.py``). The MPI gets its records the way the linkage consumer
gives them (``Mpi.ingest``); the store gets the same Patients, so the console can show the
source records side by side with golden records.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from linkage.links import LinkOrigin, LinkState
from tests.e2e.console.conftest import Watched, axe_violations, screenshot
from tests.e2e.console.served import Served

pytestmark = pytest.mark.e2e


def _patient(pid: str, birth: str, postcode: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "name": [{"use": "official", "family": "Meier", "given": ["Anna"]}],
        "birthDate": birth,
        "gender": "female",
        "address": [{"line": ["12 Lake Road"], "city": "Bern", "postalCode": postcode}],
    }


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with Served(tmp_path) as s:
        yield s


def open_review(page: Page, served: Served) -> None:
    """Load the console with no token (its page is public), sign in, go to the review."""
    page.goto(served.app_url + "#/review")
    page.get_by_label("Access token").fill(served.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Linkage review")


def test_accept_a_possible_match(served: Served, page: Page, watched: Watched) -> None:
    golden = served.add(_patient("a1", "1980-03-07", "3001"))
    served.add(_patient("a2", "1975-11-23", "3999"))  # unsure: a possible match
    assert served.mpi.golden_of("a2").state == LinkState.POSSIBLE_MATCH

    open_review(page, served)
    item = page.locator('article.review-item[data-kind="possible_match"]')
    expect(item).to_have_count(1)
    compare = item.locator("table.compare")
    expect(compare.locator("tr.differs")).to_contain_text(["1975-11-23"])
    expect(compare).to_contain_text("1980-03-07")
    weights = item.locator("table.weights tbody tr")
    assert weights.count() >= 3
    expect(item.locator("table.weights")).to_contain_text("birth")
    screenshot(page, "review-possible-match")

    item.get_by_role("button", name="Accept: link to this golden record").click()
    expect(page.get_by_text("Nothing to review")).to_be_visible()
    link = served.mpi.golden_of("a2")
    assert (link.golden_id, link.state, link.origin) == (golden, LinkState.MATCH, LinkOrigin.MANUAL)
    # Who decided: the linkage API's actor header, which the console sets.
    assert served.mpi.history(source_id="a2")[-1].actor == "console"
    watched.assert_clean()


def test_reject_a_possible_match(served: Served, page: Page, watched: Watched) -> None:
    golden = served.add(_patient("a1", "1980-03-07", "3001"))
    served.add(_patient("a2", "1975-11-23", "3999"))

    open_review(page, served)
    page.get_by_role("button", name="Reject: a different person").click()
    expect(page.get_by_text("Nothing to review")).to_be_visible()
    link = served.mpi.golden_of("a2")
    assert link.golden_id != golden and link.state == LinkState.MATCH
    assert (golden, LinkState.NO_MATCH) in {
        (x.golden_id, x.state) for x in served.mpi.links_of("a2")
    }
    watched.assert_clean()


def test_merge_duplicates_then_unmerge(served: Served, page: Page, watched: Watched) -> None:
    first = served.add(_patient("a1", "1980-03-07", "3001"))
    served.add(_patient("a2", "1980-03-07", "3001"))
    second = served.mpi.unlink("a2", first, actor="clerk").golden_id  # two goldens of Anna
    served.add(_patient("a3", "1980-03-07", "3001"))  # matches both: flags them

    open_review(page, served)
    duplicate = page.locator('article.review-item[data-kind="possible_duplicate"]')
    expect(duplicate).to_have_count(1)
    screenshot(page, "review-duplicates")
    duplicate.get_by_role("button", name="Merge into the golden record").click()
    expect(duplicate).to_have_count(0)
    survivors = {served.mpi.golden_of(s).golden_id for s in ("a1", "a2")}
    assert len(survivors) == 1 and survivors <= {first, second}
    merged_away = ({first, second} - survivors).pop()

    page.get_by_label("Golden record id that was merged away").fill(merged_away)
    page.get_by_role("button", name="Unmerge").click()
    expect(page.locator("#status")).to_have_text("Unmerged")
    assert served.mpi.golden_of("a1").golden_id != served.mpi.golden_of("a2").golden_id
    watched.assert_clean()


def test_review_page_accessibility(served: Served, browser: object) -> None:
    served.add(_patient("a1", "1980-03-07", "3001"))
    served.add(_patient("a2", "1975-11-23", "3999"))
    url = served.app_url + "#/review"
    violations = axe_violations(browser, url, "table.weights", served.token)
    assert violations == [], violations


def test_linked_record_from_the_mpi_when_goldens_are_not_in_the_store(
    served: Served, page: Page, watched: Watched
) -> None:
    golden = served.add(_patient("a1", "1980-03-07", "3001"))
    assert served.add(_patient("b1", "1980-03-07", "3001")) == golden  # a certain match
    page.goto(served.app_url + "#/patient/a1")
    page.get_by_label("Access token").fill(served.token)
    page.get_by_role("button", name="Sign in").click()
    identities = page.get_by_role("region", name="Identities")
    expect(identities.locator("tbody tr")).to_have_count(3)  # golden record and two sources
    expect(identities.locator("tbody tr").nth(0)).to_contain_text("Golden record")
    # Each source with the MPI's score for its link, and how it was linked.
    expect(identities).to_contain_text("(MATCH, AUTO)")
    watched.assert_clean()
