"""Running .github/workflows/images.yml with act (nektos/act) on this host."""
