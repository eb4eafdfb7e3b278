"""Tests that reproduce attacks from the security issues and check each is refused with a clear error."""
