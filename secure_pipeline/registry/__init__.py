"""After promotion: audit the registry, guard its aliases, serve only verified models."""
