"""Benchmarks: sei-poller against a naive python-jenkins loop, same machine, same run.

Entry point: ``python -m benchmarks.run [--quick]``; see ``benchmarks/README.md``.
"""
