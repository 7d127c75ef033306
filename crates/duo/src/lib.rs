//! Duo as a second factor: a client of Duo's Auth API v2 (signed requests, `preauth`,
//! push and passcode `auth`, `auth_status`) implementing the core's push-service seam.

pub mod sign;
