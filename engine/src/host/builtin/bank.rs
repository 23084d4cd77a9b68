//! The bank module: transfers between accounts, applied by a microbatch topology.
//!
//! Depot `*transfers` holds `{"from":"acct-…","to":"acct-…","amount_cents":N}` records,
//! partitioned by the paying account. Topology `banking` debits the payer and credits the
//! payee in PState `$$balances` (account → balance in cents, ASCII decimal), which may live
//! on different tasks. An account never written holds [`INITIAL_CENTS`], so every transfer
//! keeps the sum of all balances constant: a backup whose partitions are not at one commit
//! id shows a sum that is off.

use rand::Rng;
use rand::rngs::StdRng;
use serde::Deserialize;

use crate::host::definition::{Append, Ctx, Definition, Kind, TopologyDef, decimal};
use crate::{Error, Result};

pub const ID: &str = "bank";
pub const DEPOT: &str = "transfers";
pub const PSTATE: &str = "balances";
pub const TOPOLOGY: &str = "banking";
pub const ACCOUNTS: u32 = 10_000;
pub const INITIAL_CENTS: i64 = 1_000_000;

#[derive(Debug, Clone, Copy, Default)]
pub struct Bank;

#[derive(Deserialize)]
struct Transfer {
    from: String,
    to: String,
    amount_cents: i64,
}

pub fn account_key(n: u32) -> Vec<u8> {
    format!("acct-{n:08}").into_bytes()
}

/// A balance as stored (ASCII decimal); an absent account holds [`INITIAL_CENTS`].
pub fn parse_balance(v: Option<&[u8]>) -> Result<i64> {
    decimal(v, INITIAL_CENTS, "balance")
}

impl Definition for Bank {
    fn id(&self) -> &'static str {
        ID
    }

    fn depots(&self) -> &'static [&'static str] {
        &[DEPOT]
    }

    fn topologies(&self) -> Vec<TopologyDef> {
        vec![TopologyDef {
            name: TOPOLOGY,
            kind: Kind::Microbatch,
            depot: DEPOT,
            pstates: &[PSTATE],
            reads: None,
        }]
    }

    fn apply(&self, _topology: &str, record: &[u8], ctx: &mut Ctx) -> Result<()> {
        let t: Transfer = serde_json::from_slice(record)
            .map_err(|e| Error::InvalidInput(format!("transfer record is not valid: {e}")))?;
        for (account, delta) in [(&t.from, -t.amount_cents), (&t.to, t.amount_cents)] {
            let key = account.as_bytes();
            let balance = parse_balance(ctx.get(PSTATE, key)?.as_deref())?;
            ctx.put(PSTATE, key, (balance + delta).to_string().into_bytes());
        }
        Ok(())
    }

    fn random_append(&self, rng: &mut StdRng) -> Append {
        let from = rng.gen_range(0..ACCOUNTS);
        let to = (from + rng.gen_range(1..ACCOUNTS)) % ACCOUNTS;
        let from_key = account_key(from);
        let payload = format!(
            r#"{{"from":"{}","to":"acct-{to:08}","amount_cents":{}}}"#,
            String::from_utf8_lossy(&from_key),
            rng.gen_range(1..100_000)
        );
        Append {
            depot: DEPOT,
            key: from_key,
            payload: payload.into_bytes(),
        }
    }

    fn invariants(&self, state: &crate::host::definition::State, _processed: u64) -> Vec<String> {
        let mut drift: i64 = 0;
        for ((_, task), kvs) in state.iter().filter(|((p, _), _)| p == PSTATE) {
            for (k, v) in kvs {
                match parse_balance(Some(v)) {
                    Ok(b) => drift += b - INITIAL_CENTS,
                    Err(e) => return vec![format!("task {task}: {e} (key {k:?})")],
                }
            }
        }
        if drift != 0 {
            vec![format!(
                "the sum of all balances is off by {drift} cents: money was created or destroyed"
            )]
        } else {
            Vec::new()
        }
    }
}
