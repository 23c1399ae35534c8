"""Identify results as tables: one per sublayer of each service, and CSV that a spreadsheet opens safely."""

from __future__ import annotations

from secure_layers.mapserver import IdentifyResult
from secure_layers.tables import attribute_tables, csv_text

PERIMETER = IdentifyResult(2, "Fire perimeter", {"Name": "Ridge Fire", "Acres": 9820})
STAGING_PERIMETER = IdentifyResult(2, "Fire perimeter", {"Name": "Ridge Fire (staging copy)", "Acres": 9800})
DOZER_LINE = IdentifyResult(1, "Fire perimeter", {"Name": "Dozer line 4"})  # another sublayer, same name


def test_each_service_and_sublayer_gets_its_own_table_whatever_the_names():
    found = [("s1", "Wildfire", PERIMETER), ("s2", "Wildfire", STAGING_PERIMETER), ("s1", "Wildfire", DOZER_LINE)]
    tables = attribute_tables(found)
    assert [(t.map_name, t.layer_name, t.rows.to_dict("records")) for t in tables] == [
        ("Wildfire", "Fire perimeter", [{"Name": "Ridge Fire", "Acres": 9820}]),
        ("Wildfire", "Fire perimeter", [{"Name": "Ridge Fire (staging copy)", "Acres": 9800}]),
        ("Wildfire", "Fire perimeter", [{"Name": "Dozer line 4"}]),
    ]


def test_rows_of_one_sublayer_share_a_table():
    second = IdentifyResult(2, "Fire perimeter", {"Name": "Canyon Fire", "Acres": 140})
    [table] = attribute_tables([("s1", "Wildfire", PERIMETER), ("s1", "Wildfire", second)])
    assert table.rows["Name"].tolist() == ["Ridge Fire", "Canyon Fire"]


def test_the_csv_keeps_formulas_as_text_in_cells_and_headers():
    edited = IdentifyResult(
        2,
        "Fire perimeter",
        {"Name": '=HYPERLINK("https://evil.example","Ridge")', "Notes": "@SUM(A1)", "Acres": -5, "+Crew": "-"},
    )
    [table] = attribute_tables([("s1", "Wildfire", edited)])
    assert csv_text(table.rows).splitlines() == [
        "Name,Notes,Acres,'+Crew",
        '"\'=HYPERLINK(""https://evil.example"",""Ridge"")",\'@SUM(A1),-5,\'-',
    ]
    assert table.rows["Name"][0].startswith("=HYPERLINK")  # the table on screen shows the value as it is
