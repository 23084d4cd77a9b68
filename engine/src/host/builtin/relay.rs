//! The relay module: a stream topology that reads the depot of *another* module — the pair
//! of modules `rbk demo --modules 2` runs, each reading the other's depot.
//!
//! Depot `*events` holds `{"id":"<16 hex>"}` records (written by load generators). Topology
//! `core` reads `*events` of the module its module.json subscribes it to
//! (`"<module>/*events"`, see [`crate::host::module::create_module_reading`]) and counts every
//! id it sees in `$$seen` (`id/<hex>` → times seen) and the records it applied (`total`).
//! Between two records the counts add up to the total; after a restore of the module it
//! reads, it goes on exactly from the restored end (each new id counted once).

use rand::Rng;
use rand::rngs::StdRng;
use serde::Deserialize;

use crate::host::definition::{Append, Ctx, Definition, Kind, State, TopologyDef, decimal};
use crate::{Error, Result};

pub const ID: &str = "relay";
pub const DEPOT: &str = "events";
pub const SEEN: &str = "seen";
pub const TOPOLOGY: &str = "core";
/// The key counting applied records.
pub const TOTAL: &[u8] = b"total";

#[derive(Debug, Clone, Copy, Default)]
pub struct Relay;

#[derive(Deserialize)]
struct Event {
    id: String,
}

/// The `$$seen` key of an event id.
pub fn seen_key(id: &str) -> Vec<u8> {
    format!("id/{id}").into_bytes()
}

fn count(v: Option<&[u8]>) -> Result<u64> {
    decimal(v, 0, "count")
}

impl Definition for Relay {
    fn id(&self) -> &'static str {
        ID
    }

    fn depots(&self) -> &'static [&'static str] {
        &[DEPOT]
    }

    fn topologies(&self) -> Vec<TopologyDef> {
        vec![TopologyDef {
            name: TOPOLOGY,
            kind: Kind::Stream,
            depot: DEPOT,
            pstates: &[SEEN],
            reads: None,
        }]
    }

    fn apply(&self, _topology: &str, record: &[u8], ctx: &mut Ctx) -> Result<()> {
        let e: Event = serde_json::from_slice(record)
            .map_err(|e| Error::InvalidInput(format!("event record is not valid: {e}")))?;
        for key in [seen_key(&e.id), TOTAL.to_vec()] {
            let n = count(ctx.get(SEEN, &key)?.as_deref())?;
            ctx.put(SEEN, &key, (n + 1).to_string().into_bytes());
        }
        Ok(())
    }

    fn random_append(&self, rng: &mut StdRng) -> Append {
        let id = format!("{:016x}", rng.r#gen::<u64>());
        Append {
            depot: DEPOT,
            key: id.clone().into_bytes(),
            payload: format!(r#"{{"id":"{id}"}}"#).into_bytes(),
        }
    }

    /// `processed` counts depot offsets, which a restore of the module read moves back:
    /// the check is that the counts add up to the records applied.
    fn invariants(&self, state: &State, _processed: u64) -> Vec<String> {
        let mut ids = 0u64;
        let mut total = 0u64;
        for kvs in state.values() {
            for (k, v) in kvs {
                match count(Some(v)) {
                    Ok(n) if k.as_slice() == TOTAL => total += n,
                    Ok(n) => ids += n,
                    Err(e) => return vec![e.to_string()],
                }
            }
        }
        if ids == total {
            Vec::new()
        } else {
            vec![format!(
                "partitions are not from one point in time: {ids} ids counted, {total} records \
                 applied"
            )]
        }
    }
}
