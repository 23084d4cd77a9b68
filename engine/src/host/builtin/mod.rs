//! The module definitions rbk ships, and their registry: a module.json's `rbk.definition`
//! names one of them. `bank` is a microbatch module (transfers between accounts, whose total
//! never changes), `pageviews` a stream module (views counted per page and per user), `relay`
//! a stream module reading another module's depot.

pub mod bank;
pub mod pageviews;
pub mod relay;

use std::sync::Arc;

use super::definition::Definition;

/// The built-in definitions, by `rbk.definition` id.
pub fn lookup(id: &str) -> Option<Arc<dyn Definition>> {
    match id {
        bank::ID => Some(Arc::new(bank::Bank)),
        pageviews::ID => Some(Arc::new(pageviews::PageViews)),
        relay::ID => Some(Arc::new(relay::Relay)),
        _ => None,
    }
}

/// Every built-in definition's id.
pub const IDS: [&str; 3] = [bank::ID, pageviews::ID, relay::ID];
