//! The [`jobforge_core::ports::Registry`] port over the OCI distribution API.
