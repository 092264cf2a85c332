//! The embedded [`jobforge_core::ports::Store`] on SQLite.
