"""The HTML that Jupyter shows for validation and restore-verification results, rendered by headless
Chromium: the summary table must be visible, failing rows red and passing rows green.

Chromium (Debian package `chromium`, installed by scripts/setup.sh --tests) draws the page to a PNG; the
test finds the text lines drawn in each colour. Without Chromium the test is skipped, saying so;
tests/unit/test_api_results.py still checks that the same HTML is well-formed and holds the table.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime

import pytest
from PIL import Image

from etl.checksum import JobValidation, Manifest, TableManifest, validate_table
from etl.records import Column, TableSpec
from etl.restore import verify_restore

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
RED, GREEN = (0xCF, 0x22, 0x2E), (0x1A, 0x7F, 0x37)
"""The fail and pass colours of the summary tables."""

SPEC = TableSpec("pg", "patients", ("id",), (Column("id", "int", nullable=False), Column("name", "string"),
                                              Column("seen", "timestamptz(6)")))


def page() -> str:
    """Validation (one failing table, one equal) then a restore verification (one failing table)."""
    rows = [{"id": i, "name": f"patient {i}", "seen": datetime(2026, 1, 1, tzinfo=UTC)} for i in range(100)]
    renamed = [dict(r, name="x") if r["id"] == 5 else r for r in rows]
    changed = validate_table(SPEC, lambda: rows, lambda: renamed)
    equal = validate_table(TableSpec("pg", "visits", SPEC.key, SPEC.columns), lambda: rows, lambda: rows)
    manifest = Manifest(position={"lsn": "0/1"}, taken_at="sun")
    manifest.add(TableManifest.build(SPEC, rows, buckets=8, boundaries=[[50]]))
    restored = verify_restore({"patients": rows[1:]}, manifest, [SPEC])
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>"
            f"<h3>Validation</h3>{JobValidation([changed, equal])._repr_html_()}"
            f"<h3>Restore</h3>{restored._repr_html_()}</body></html>")


def bands(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 40) -> list[tuple[int, int]]:
    """Text lines drawn in `colour`: runs of pixel rows (top, bottom) holding at least 3 pixels near
    it, a gap of up to 3 rows joined (descenders of g and p sit apart from the letters' bodies)."""
    pixels = image.load()
    width, height = image.size
    hits = [y for y in range(height)
            if sum(all(abs(a - b) <= tolerance for a, b in zip(pixels[x, y], colour, strict=True))
                   for x in range(width)) >= 3]
    runs: list[tuple[int, int]] = []
    for y in hits:
        if runs and y <= runs[-1][1] + 4:
            runs[-1] = (runs[-1][0], y)
        else:
            runs.append((y, y))
    return runs


def screenshot(folder, html: str, size: str) -> Image.Image:
    """`html` drawn by headless Chromium in a window of `size` (`WIDTH,HEIGHT`)."""
    html_file, shot = folder / "page.html", folder / "page.png"
    html_file.write_text(html, encoding="utf-8")
    completed = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size={size}", f"--user-data-dir={folder / 'profile'}", f"--screenshot={shot}",
         html_file.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert shot.exists(), completed.stderr[-2000:]
    return Image.open(shot).convert("RGB")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian package chromium)")
def test_summary_tables_are_visible_with_pass_and_fail_colours(tmp_path):
    image = screenshot(tmp_path, page(), "1200,500")
    red, green = bands(image, RED), bands(image, GREEN)
    # red: validation verdict, its FAIL row, restore verdict, its FAIL row; green: the passing row
    assert len(red) == 4 and len(green) == 1, (red, green)
    assert red[1][1] < green[0][0] < red[2][0]


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian package chromium)")
def test_numbers_are_drawn_right_aligned_with_thousands_separators(tmp_path):
    """A failing table with 1,000 changed rows above an equal one with 0: the last column's numbers
    end at the same x (right-aligned), though "1,000" is much wider than "0"."""
    rows = [{"id": i, "name": f"patient {i}", "seen": datetime(2026, 1, 1, tzinfo=UTC)} for i in range(1000)]
    changed = validate_table(SPEC, lambda: rows, lambda: [dict(r, name="x") for r in rows])
    equal = validate_table(TableSpec("pg", "visits", SPEC.key, SPEC.columns), lambda: rows[:10],
                           lambda: rows[:10])
    image = screenshot(tmp_path, "<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>"
                       f"{JobValidation([changed, equal])._repr_html_()}</body></html>", "900,200")
    red_row, green_row = bands(image, RED)[1], bands(image, GREEN)[0]  # red[0]: the verdict line

    def right_edge(band: tuple[int, int], colour: tuple[int, int, int]) -> int:
        pixels = image.load()
        return max(x for x in range(image.size[0]) for y in range(band[0], band[1] + 1)
                   if all(abs(a - b) <= 40 for a, b in zip(pixels[x, y], colour, strict=True)))

    assert abs(right_edge(red_row, RED) - right_edge(green_row, GREEN)) <= 2
    assert "1,000" in JobValidation([changed, equal])._repr_html_()
