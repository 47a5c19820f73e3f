"""Shared machinery of the fieldbot benchmarks (imported by the scripts in ``benchmarks/``).

Nothing here is imported by the bot or by the test suite.
"""
