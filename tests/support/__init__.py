"""What the test packages and the benchmarks share: processes they start, waiting, fakes, data readers."""
