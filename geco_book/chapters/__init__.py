"""One thin module per chapter: its settings per profile, its runs and its tables."""
