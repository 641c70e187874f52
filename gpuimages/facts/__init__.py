"""The facts stage of the flow (docs/architecture.md)."""
