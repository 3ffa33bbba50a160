//! Compose loading and conversion tests.
