"""knosc-sim: a standalone emulation of the Knosc v1.41 REST API for tests, benchmarks and the demo."""
