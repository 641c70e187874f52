"""The release stage of the flow (docs/architecture.md)."""
