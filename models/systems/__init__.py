"""One module per system; each registers itself with models.core.registry.register_system."""
