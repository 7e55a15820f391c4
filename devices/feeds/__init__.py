"""Simulated upstream systems (an HIS sending HL7 v2) for the demo, tests and benchmarks."""
