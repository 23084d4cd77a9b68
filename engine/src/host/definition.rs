//! What a module is to the host: its depots, PStates and topologies, and the Rust code that
//! turns depot records into PState writes.
//!
//! A topology's code sees one record at a time through a [`Ctx`]: it reads PState values
//! (its own pending writes first, then the committed state) and stages writes. The host
//! decides when staged writes become durable: a microbatch topology commits a whole batch to
//! every partition under one commit id; a stream topology commits each record on its own.
//!
//! Rule for topology code (it makes crash recovery exact, see `host::module`): the value
//! written to a key may depend only on values read from the *same partition* — as with
//! Rama's partitioners, where code runs on the task that owns the data.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rand::rngs::StdRng;
use rocksdb::DB;

use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Microbatch,
    Stream,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Microbatch => "microbatch",
            Kind::Stream => "stream",
        }
    }
}

/// One topology: it consumes every partition of `depot` and writes `pstates`.
#[derive(Debug, Clone)]
pub struct TopologyDef {
    /// Without prefix, e.g. `banking`.
    pub name: &'static str,
    pub kind: Kind,
    /// Without the `*` prefix.
    pub depot: &'static str,
    /// Without the `$$` prefix. Each PState belongs to exactly one topology.
    pub pstates: &'static [&'static str],
    /// `None`: `depot` is the module's own. Otherwise the module whose `depot` it reads, as
    /// the host found it in module.json's `subscribes` (definitions leave it `None`).
    pub reads: Option<ForeignDepot>,
}

/// Another module's depot a topology reads: task t reads partition `t mod tasks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignDepot {
    pub module: String,
    /// That module's task count.
    pub tasks: u32,
}

/// One partition's keys and values.
pub type Kvs = std::collections::BTreeMap<Vec<u8>, Vec<u8>>;

/// PState contents: (pstate, task) → key → value, reserved keys left out: what a
/// definition's invariants are checked against.
pub type State = std::collections::BTreeMap<(String, u32), Kvs>;

/// A record a load generator wants appended: to `depot`, in the partition owning `key`.
#[derive(Debug, Clone)]
pub struct Append {
    pub depot: &'static str,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

pub trait Definition: Send + Sync + std::fmt::Debug {
    /// The value of `rbk.definition` in module.json that selects this definition.
    fn id(&self) -> &'static str;
    fn depots(&self) -> &'static [&'static str];
    fn topologies(&self) -> Vec<TopologyDef>;
    /// Applies one depot record of `topology`'s depot to PStates through `ctx`.
    ///
    /// # Errors
    /// A record the code cannot process; the topology stops with this error.
    fn apply(&self, topology: &str, record: &[u8], ctx: &mut Ctx) -> Result<()>;
    /// A random record for load generation (demo, tests, `rbk serve --load`).
    fn random_append(&self, rng: &mut StdRng) -> Append;
    /// What must hold of the module's PStates (all partitions, reserved keys left out)
    /// after `processed` depot records; each violation described in a sentence.
    fn invariants(&self, state: &State, processed: u64) -> Vec<String>;
}

/// The task owning `key`: a stable hash, so a restored or restarted module routes the same.
pub fn task_of(key: &[u8], tasks: u32) -> u32 {
    crc32c::crc32c(key) & (tasks - 1)
}

/// A number stored as ASCII decimal (how the built-in modules keep values); `absent` when
/// the key has no value.
///
/// # Errors
/// `InvalidInput` naming `what` when the bytes are not such a number.
pub fn decimal<T: std::str::FromStr>(v: Option<&[u8]>, absent: T, what: &str) -> Result<T> {
    match v {
        None => Ok(absent),
        Some(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| crate::Error::InvalidInput(format!("{what} {b:?} is not a number"))),
    }
}

/// Keys rbk itself keeps in PStates start with this byte; topology keys never do.
pub const RESERVED_PREFIX: u8 = 0;

/// Reads and staged writes of one batch (microbatch) or one record (stream).
pub struct Ctx<'a> {
    tasks: u32,
    /// The committed state; `None` for an empty one (replays).
    dbs: Option<&'a HashMap<(String, u32), Arc<DB>>>,
    /// (pstate, task) → key → value, in key order so commits are deterministic.
    pub(crate) staged: BTreeMap<(String, u32), BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(tasks: u32, dbs: Option<&'a HashMap<(String, u32), Arc<DB>>>) -> Self {
        Ctx {
            tasks,
            dbs,
            staged: BTreeMap::new(),
        }
    }

    /// The current value of `key` in `pstate` (in the partition owning the key).
    ///
    /// # Errors
    /// RocksDB read errors; an unknown PState.
    pub fn get(&self, pstate: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let part = (pstate.to_string(), task_of(key, self.tasks));
        if let Some(v) = self.staged.get(&part).and_then(|m| m.get(key)) {
            return Ok(Some(v.clone()));
        }
        let Some(dbs) = self.dbs else {
            return Ok(None);
        };
        let db = dbs.get(&part).ok_or_else(|| {
            crate::Error::InvalidInput(format!("topology code used unknown PState `$${pstate}`"))
        })?;
        db.get(key)
            .map_err(|e| crate::Error::InvalidInput(format!("reading PState `$${pstate}`: {e}")))
    }

    /// Stages `value` for `key` in `pstate`.
    pub fn put(&mut self, pstate: &str, key: &[u8], value: Vec<u8>) {
        debug_assert!(key.first() != Some(&RESERVED_PREFIX));
        let part = (pstate.to_string(), task_of(key, self.tasks));
        self.staged
            .entry(part)
            .or_default()
            .insert(key.to_vec(), value);
    }
}
