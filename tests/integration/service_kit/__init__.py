"""Real services started and stopped by the integration tests: the implementations behind
tests/integration/services.py (read its docstring first)."""
