"""Prompt metadata: composer table, periods, instrumentation from parts, user overrides."""

import json
from pathlib import Path

import pytest

from base.typed_config import ConfigError
from pipelines.data.metadata import MetadataOverrides, Prompt, canonical_composer, infer_prompt, instrumentation_of


@pytest.mark.parametrize(
    "raw,name",
    [
        ("J.S. Bach", "Bach, Johann Sebastian"),
        ("Johann Sebastian Bach", "Bach, Johann Sebastian"),
        ("C.P.E. Bach", "Bach, Carl Philipp Emanuel"),
        ("Palestrina, Giovanni Perluigi da", "Palestrina, Giovanni Pierluigi da"),
        ("Johannes Ciconia (opus dubium)", "Ciconia, Johannes"),
        ("Lorenzo F-Pn", "Lorenzo da Firenze"),
        ("Clara Schumann", "Schumann, Clara"),
        ("Robert Schumann", "Schumann, Robert"),
        ("Cushing (1804)", "Cushing"),
        ("Anonymous I-Rvat", None),
        ("Anonyous", None),
        ("", None),
    ],
)
def test_canonical_composer(raw, name):
    assert canonical_composer(raw) == name


@pytest.mark.parametrize(
    "parts,voices,collection,label",
    [
        (["Soprano", "Alto", "Tenor", "Bass"], 4, "bach", "Chorus"),
        (["Violin I", "Violin II", "Viola", "Violoncello"], 4, "haydn", "String Quartet"),
        (["Piano", ""], 2, "user", "Keyboard"),
        (["Voice", "Piano", ""], 3, "user", "Voice and Keyboard"),
        (["Soprano", "Alto", "Violin", "Oboe"], 4, "bach", "Voices and Instruments"),
        ([""], 1, "oneills1850", "Solo melody"),
        (["", "", "", "", ""], 5, "palestrina", "Chorus"),
        (["Flute", "Oboe", "Horn"], 3, "user", "Chamber"),
    ],
)
def test_instrumentation_from_parts(parts, voices, collection, label):
    assert instrumentation_of(parts, voices, collection) == label


def test_infer_prompt_uses_source_then_table():
    assert infer_prompt("J.S. Bach", ["Soprano", "Alto", "Tenor", "Bass"], 4, "bach") == Prompt(
        "Baroque", "Bach, Johann Sebastian", "Chorus"
    )
    # Monteverdi's madrigals credit the poet in the composer field: the collection wins
    assert infer_prompt("G.B. Guarini", [""] * 5, 5, "monteverdi").composer == "Monteverdi, Claudio"
    assert infer_prompt("Trad.", [""], 1, "oneills1850") == Prompt("Folk", "Traditional, Irish", "Solo melody")
    p = infer_prompt("Mozart, Wolfgang Amadeus", ["", ""], 2, "myscores")
    assert (p.period, p.composer) == ("Classical", "Mozart, Wolfgang Amadeus")
    assert infer_prompt(None, ["Piano"], 1, "myscores") == Prompt("Unknown", "Anonymous", "Keyboard")
    assert Prompt("Baroque", "Bach, Johann Sebastian", "Chorus").key() == "Baroque_Bach, Johann Sebastian_Chorus"


def test_overrides_from_csv_and_json(tmp_path: Path):
    csv_path = tmp_path / "meta.csv"
    csv_path.write_text(
        "match,period,composer,instrumentation\n"
        "scores.*,Romantic,,\n"
        'scores.duet,,"Schubert, Franz",Voice and Keyboard\n'
    )
    ov = MetadataOverrides.load(csv_path)
    base = Prompt("Unknown", "Anonymous", "Ensemble")
    assert ov.apply(base, "scores.duet", "/x/duet.xml") == Prompt("Romantic", "Schubert, Franz", "Voice and Keyboard")
    assert ov.apply(base, "scores.other", "/x/o.xml") == Prompt("Romantic", "Anonymous", "Ensemble")
    assert ov.apply(base, "elsewhere.x", "/y/x.xml") == base

    json_path = tmp_path / "meta.json"
    json_path.write_text(json.dumps({"/x/duet.xml": {"composer": "Brahms, Johannes"}}))
    assert MetadataOverrides.load(json_path).apply(base, "scores.duet", "/x/duet.xml").composer == "Brahms, Johannes"


def test_bad_override_file_names_the_field(tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text("match,era\nx,Baroque\n")
    with pytest.raises(ConfigError, match=r"data.metadata_overrides: .*unknown columns \['era'\]"):
        MetadataOverrides.load(bad)
    with pytest.raises(ConfigError, match="data.metadata_overrides: file .* not found"):
        MetadataOverrides.load(tmp_path / "missing.json")
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"must be a \.csv or \.json"):
        MetadataOverrides.load(tmp_path / "m.txt")
