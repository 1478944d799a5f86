"""Result tables for notebooks: numbers right-aligned with thousands separators, blank columns left out."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pandas as pd

from etl.html_table import html_table


def test_numbers_align_right_with_separators_and_blank_columns_are_left_out():
    rows = [{"table": "patients", "rows": 1234567, "share": 0.5, "note": None, "missing": pd.NA, "ok": True},
            {"table": "visits", "rows": 12, "share": 1.0, "note": "", "missing": pd.NA, "ok": False}]
    page = html_table([("table", "table"), ("rows", "rows"), ("share", "share"), ("note", "note"),
                       ("missing", "missing"), ("ok", "ok")], rows,
                      colour=lambda row: "#1a7f37" if row["ok"] else "#cf222e")
    table = ET.fromstring(page)
    assert [th.text for th in table.iter("th")] == ["table", "rows", "share", "ok"]
    assert [[td.text or "" for td in tr.iter("td")] for tr in table.find("tbody")] == [
        ["patients", "1,234,567", "0.50", "True"], ["visits", "12", "1.00", "False"]]
    aligns = [td.get("style").rsplit(":", 1)[1] for td in table.find("tbody")[0]]
    assert aligns == ["left", "right", "right", "left"]
    assert [tr.get("style") for tr in table.find("tbody")] == ["color:#1a7f37", "color:#cf222e"]
