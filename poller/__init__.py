"""sei-poller: CI/CD history into Harness SEI, with nothing installed on the CI server."""

__version__ = "0.2.0"
