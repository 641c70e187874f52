"""The vet stage of the flow (docs/architecture.md)."""
