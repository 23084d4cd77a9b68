//! Every object key of a store, built and parsed in one place (docs/format.md, "Object keys").
//!
//! ```text
//! config                                   the store's config (JSON)
//! packs/<2 hex>/<pack id>                  a pack
//! manifests/<group>/<name>                 a manifest (rbk: group = module, name = backup id)
//! sessions/<session id>/hb-<10 digit seq>  a heartbeat of a running session
//! sessions/<session id>/revoked            a session's tombstone, written by the GC that revoked it
//! sessions/clock-<16 hex>/probe            a GC's probe of the store's clock (deleted at once)
//! gc/<record id>/condemned                 the packs one GC run condemned
//! gc/<record id>/armed                     the sessions that record waits for
//! gc/<record id>/swept                     its packs are deleted (version 4 stores)
//! pending/<group>/<name>/begin             a backup many processes write, not yet committed
//! pending/<group>/<name>/part-<part>       one process's part of it
//! ```
//!
//! Nothing else in the crate formats a key; the parsers return `None` for objects rbk did
//! not write, which every listing ignores.

use crate::PackId;

pub const CONFIG: &str = "config";
pub const PACKS: &str = "packs/";
pub const MANIFESTS: &str = "manifests/";
pub const SESSIONS: &str = "sessions/";
pub const GC: &str = "gc/";
pub const PENDING: &str = "pending/";

pub fn pack(id: &PackId) -> String {
    let h = id.to_hex();
    format!("{PACKS}{}/{h}", &h[..2])
}

/// The pack a key names; `None` for anything under `packs/` rbk did not write.
pub fn parse_pack(key: &str) -> Option<PackId> {
    let name = key.strip_prefix(PACKS)?.rsplit('/').next()?;
    PackId::from_hex(name).ok()
}

pub fn manifest(group: &str, name: &str) -> String {
    format!("{MANIFESTS}{group}/{name}")
}

/// The prefix of one group's manifests.
pub fn manifests_of(group: &str) -> String {
    format!("{MANIFESTS}{group}/")
}

/// `(group, name)` of a manifest key.
pub fn parse_manifest(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix(MANIFESTS)?.split_once('/')
}

pub const HEARTBEAT_PREFIX: &str = "hb-";
pub const REVOKED: &str = "revoked";

pub fn heartbeat(session: &str, seq: u64) -> String {
    format!("{SESSIONS}{session}/{HEARTBEAT_PREFIX}{seq:010}")
}

pub fn revoked(session: &str) -> String {
    format!("{SESSIONS}{session}/{REVOKED}")
}

/// The prefix of one session's objects.
pub fn session_objects(session: &str) -> String {
    format!("{SESSIONS}{session}/")
}

/// A fresh key for a probe of the store's clock.
pub fn clock_probe() -> String {
    format!("{SESSIONS}clock-{:016x}/probe", rand::random::<u64>())
}

/// Whether `(id, name)` of a session key is a clock probe.
pub fn is_clock_probe(id: &str, name: &str) -> bool {
    id.starts_with("clock-") && name == "probe"
}

/// `(session id, object name)` of a key under `sessions/`.
pub fn parse_session(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix(SESSIONS)?.split_once('/')
}

pub const CONDEMNED: &str = "condemned";
pub const ARMED: &str = "armed";
pub const SWEPT: &str = "swept";

pub fn gc_record(id: &str, part: &str) -> String {
    format!("{GC}{id}/{part}")
}

/// `(record id, part)` of a key under `gc/`.
pub fn parse_gc_record(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix(GC)?.split_once('/')
}

pub const PENDING_BEGIN: &str = "begin";
pub const PART_PREFIX: &str = "part-";

pub fn pending_begin(group: &str, name: &str) -> String {
    format!("{PENDING}{group}/{name}/{PENDING_BEGIN}")
}

pub fn pending_part(group: &str, name: &str, part: &str) -> String {
    format!("{PENDING}{group}/{name}/{PART_PREFIX}{part}")
}

/// The prefix of one group's pending objects.
pub fn pending_of(group: &str) -> String {
    format!("{PENDING}{group}/")
}

/// One object of a pending write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingObject<'a> {
    Begin,
    Part(&'a str),
}

/// `(group, name, object)` of a key under `pending/`.
pub fn parse_pending(key: &str) -> Option<(&str, &str, PendingObject<'_>)> {
    let (group, rest) = key.strip_prefix(PENDING)?.split_once('/')?;
    let (name, object) = rest.split_once('/')?;
    let object = match object {
        PENDING_BEGIN => PendingObject::Begin,
        o => PendingObject::Part(
            o.strip_prefix(PART_PREFIX)
                .filter(|p| !p.is_empty() && !p.contains('/'))?,
        ),
    };
    Some((group, name, object))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back_and_foreign_keys_do_not() {
        let p = PackId::of(b"pack");
        let k = pack(&p);
        assert_eq!(&k[..8], &format!("packs/{}", &p.to_hex()[..2])[..8]);
        assert_eq!(parse_pack(&k), Some(p));
        assert_eq!(parse_pack("packs/zz/not-hex"), None);
        assert_eq!(parse_manifest(&manifest("m", "m-1")), Some(("m", "m-1")));
        assert_eq!(
            parse_session(&heartbeat("s", 3)),
            Some(("s", "hb-0000000003"))
        );
        assert_eq!(parse_session(&revoked("s")), Some(("s", REVOKED)));
        assert_eq!(parse_gc_record(&gc_record("r", ARMED)), Some(("r", ARMED)));
        assert_eq!(
            parse_pending(&pending_begin("m", "b")),
            Some(("m", "b", PendingObject::Begin))
        );
        assert_eq!(
            parse_pending(&pending_part("m", "b", "p1")),
            Some(("m", "b", PendingObject::Part("p1")))
        );
        assert_eq!(parse_pending("pending/m/b/other"), None);
        assert_eq!(parse_pending("pending/m/b/part-"), None);
        let probe = clock_probe();
        let (id, name) = parse_session(&probe).unwrap();
        assert!(is_clock_probe(id, name));
    }
}
