"""Side-by-side benchmarks (not tests: CI does not run them)."""
