//! One file per user-level operation.

pub mod backup;
pub mod info;
pub mod list;
pub mod restore;
