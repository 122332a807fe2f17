"""Benchmarks of the appliance pipeline against what a user would do otherwise; see docs/benchmarks.md.

Each module measures one figure on the machine at hand, baseline and appliance in the same run, and
returns plain data for bench/results.json. Nothing here asserts timings: benchmarks are not tests.
"""
