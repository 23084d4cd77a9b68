//! The page-views module: a stream topology counting views per page and per user.
//!
//! Depot `*views` holds `{"user":"user-…","page":"/p/…"}` records, partitioned by user.
//! Topology `counts` processes each record on its own: it increments `$$pageViews[page]` and
//! `$$userViews[user]` — usually partitions of different tasks, each its own atomic write.
//! Between two records the three totals agree: views per page, views per user, and records
//! processed. A backup whose partitions were captured at different moments does not.

use rand::Rng;
use rand::rngs::StdRng;
use serde::Deserialize;

use crate::host::definition::{Append, Ctx, Definition, Kind, TopologyDef, decimal};
use crate::{Error, Result};

pub const ID: &str = "pageviews";
pub const DEPOT: &str = "views";
pub const PAGE_VIEWS: &str = "pageViews";
pub const USER_VIEWS: &str = "userViews";
pub const TOPOLOGY: &str = "counts";

#[derive(Debug, Clone, Copy, Default)]
pub struct PageViews;

#[derive(Deserialize)]
struct View {
    user: String,
    page: String,
}

fn parse_count(v: Option<&[u8]>) -> Result<u64> {
    decimal(v, 0, "count")
}

impl Definition for PageViews {
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
            pstates: &[PAGE_VIEWS, USER_VIEWS],
            reads: None,
        }]
    }

    fn apply(&self, _topology: &str, record: &[u8], ctx: &mut Ctx) -> Result<()> {
        let v: View = serde_json::from_slice(record)
            .map_err(|e| Error::InvalidInput(format!("view record is not valid: {e}")))?;
        for (pstate, key) in [
            (PAGE_VIEWS, v.page.as_bytes()),
            (USER_VIEWS, v.user.as_bytes()),
        ] {
            let n = parse_count(ctx.get(pstate, key)?.as_deref())?;
            ctx.put(pstate, key, (n + 1).to_string().into_bytes());
        }
        Ok(())
    }

    fn random_append(&self, rng: &mut StdRng) -> Append {
        let user = format!("user-{:05}", rng.gen_range(0..5_000));
        let payload = format!(
            r#"{{"user":"{user}","page":"/p/{}"}}"#,
            rng.gen_range(0..500)
        );
        Append {
            depot: DEPOT,
            key: user.into_bytes(),
            payload: payload.into_bytes(),
        }
    }

    fn invariants(&self, state: &crate::host::definition::State, processed: u64) -> Vec<String> {
        let total = |pstate: &str| -> Result<u64> {
            let mut sum = 0;
            for ((p, _), kvs) in state {
                if p == pstate {
                    for v in kvs.values() {
                        sum += parse_count(Some(v))?;
                    }
                }
            }
            Ok(sum)
        };
        match (total(PAGE_VIEWS), total(USER_VIEWS)) {
            (Ok(pages), Ok(users)) if pages == users && users == processed => Vec::new(),
            (Ok(pages), Ok(users)) => vec![format!(
                "partitions are not from one point in time: {pages} views counted per page, \
                 {users} per user, {processed} records processed"
            )],
            (Err(e), _) | (_, Err(e)) => vec![e.to_string()],
        }
    }
}
