//! End-to-end tests of `config::load`.
