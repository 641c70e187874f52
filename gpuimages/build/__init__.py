"""The build stage of the flow (docs/architecture.md)."""
