"""The core stage of the flow (docs/architecture.md)."""
