"""Corpus building: real scores → standard ABC → cleaned → interleaved ABC and NotaGen training form."""
