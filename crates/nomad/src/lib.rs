//! Nomad for jobforge: [`job`] (the job specification we register, in Nomad's wire form),
//! [`render`] (a jobforge run → a Nomad batch job, to the letter of the seed spec), and the
//! typed HTTP client and backend (coming next).
//!
//! Field names are Nomad's Go field names, exactly; durations are integer nanoseconds.

pub mod job;
pub mod render;
