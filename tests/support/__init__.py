"""Support code for the tests (harnesses and oracles), imported by test modules."""
