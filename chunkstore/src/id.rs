//! Content ids: BLAKE3-256 hashes. A [`ChunkId`] names a chunk by its uncompressed bytes; a
//! [`PackId`] names a pack by the bytes of the whole pack object. Both are 32 bytes written as
//! 64 hex digits, but they are never interchangeable: a pack id looked up as a chunk finds
//! nothing, so the types keep them apart.

use std::fmt;

use crate::{Error, Result};

/// The BLAKE3-256 hash of a chunk's uncompressed bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

/// The BLAKE3-256 hash of a whole pack object, which names it in the store.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackId(pub [u8; 32]);

macro_rules! content_id {
    ($t:ident, $what:literal) => {
        impl $t {
            pub const LEN: usize = 32;

            pub fn of(data: &[u8]) -> Self {
                $t(*blake3::hash(data).as_bytes())
            }

            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// # Errors
            /// `InvalidInput` unless `s` is exactly 64 hex digits.
            pub fn from_hex(s: &str) -> Result<Self> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out)
                    .map_err(|_| Error::InvalidInput(format!("`{s}` is not a 64-digit hex id")))?;
                Ok($t(out))
            }

            /// # Errors
            /// `Corrupt` when `b` is not 32 bytes long.
            pub fn from_slice(b: &[u8]) -> Result<Self> {
                let arr: [u8; 32] = b.try_into().map_err(|_| {
                    Error::corrupt($what, format!("{} bytes, expected 32", b.len()))
                })?;
                Ok($t(arr))
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($t), &self.to_hex()[..16])
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}

content_id!(ChunkId, "chunk id");
content_id!(PackId, "pack id");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects_bad_input() {
        let id = ChunkId::of(b"hello");
        assert_eq!(ChunkId::from_hex(&id.to_hex()).unwrap(), id);
        assert_eq!(
            id.to_hex(),
            "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"
        );
        assert_eq!(
            ChunkId::from_hex("zz").unwrap_err().kind(),
            crate::ErrorKind::InvalidInput
        );
    }
}
