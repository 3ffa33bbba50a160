//! machines.yml and the repository → validated desired state.
