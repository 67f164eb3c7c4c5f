"""ABC text formats: interleaved and NotaGen form, ABC ⇄ MusicXML, and reading ABC as a music21 score."""
