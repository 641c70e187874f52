"""The host stage of the flow (docs/architecture.md)."""
