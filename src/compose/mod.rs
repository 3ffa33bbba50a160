//! Compose files → swarm specs (pure).
