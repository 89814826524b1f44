"""Test-only workflows (never in the product catalog)."""
