//! One file per user-level operation.

pub mod backup;
pub mod dependents;
pub mod gc;
pub mod info;
pub mod list;
pub mod parts;
pub mod predict;
pub mod restore;
pub mod stats;
pub mod verify;
