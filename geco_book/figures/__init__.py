"""The chapters' figures: one module per chapter; tests run every function."""
